//! cairn-platform
