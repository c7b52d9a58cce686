//! Deterministic discrete-event simulator of icepact peers (filled by the simulator work).
