//! cairn-recovery
