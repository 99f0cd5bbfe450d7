//! Proto3 JSON.
