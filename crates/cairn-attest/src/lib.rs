//! cairn-attest
