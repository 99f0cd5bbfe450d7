//! Path templates.
