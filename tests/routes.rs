//! The stock gateway's route table, as `protogate routes` prints it.

#[test]
fn route_table_snapshot() {
    if std::env::var_os("PROTOGATE_PROTO_DIR").is_some_and(|d| !d.is_empty()) {
        // Built with a team's protos, which leave the demo out unless PROTOGATE_DEMO=1 keeps it
        // beside them: the snapshot describes the demo alone.
        return;
    }
    insta::assert_snapshot!(protogate_gateway::upstream::route_table());
}
