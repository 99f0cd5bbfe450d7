//! Compiles every test proto under `proto/` with protogate-build, as a user's build script would.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The directory too, so that a proto added to it is compiled.
    println!("cargo:rerun-if-changed=proto");
    let mut protos = protogate_build::protos_under("proto")?;
    // protogate's own external auth service, built in to protogate-build: the tests implement
    // it with the tonic server generated here.
    protos.push("protogate/api/auth.proto".into());
    // The RPCs without rules (protogate/tests/unbound) get unbound routes, which a gateway
    // serves only when its switch is on.
    if let Err(error) = protogate_build::configure()
        .unbound_methods(true)
        .compile(&protos, &["proto"])
    {
        eprintln!("{error}");
        return Err("protogate-build failed; see the message above".into());
    }
    Ok(())
}
