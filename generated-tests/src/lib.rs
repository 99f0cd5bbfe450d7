//! Generated gateways under test.
