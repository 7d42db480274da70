//! cairn-manifest
