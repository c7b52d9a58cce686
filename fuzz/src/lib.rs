//! Fuzz targets of icepact; their bodies are in `targets.rs`, shared with the corpus-reach test
//! of the main workspace.

pub mod targets;
