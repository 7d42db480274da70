//! cairn-ca
