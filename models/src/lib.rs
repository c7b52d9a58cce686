//! Stateright models of the icepact core (filled by the model-checking work).
