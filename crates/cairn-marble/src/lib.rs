//! cairn-marble
