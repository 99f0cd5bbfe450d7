//! Compiles every test proto under `proto/` with protogate-build, as a user's build script would.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The directory too, so that a proto added to it is compiled.
    println!("cargo:rerun-if-changed=proto");
    let mut protos = protogate_build::protos_under("proto")?;
    // protogate's own external auth service, built in to protogate-build: the tests implement
    // it with the tonic server generated here.
    protos.push("protogate/api/auth.proto".into());
    if let Err(error) = protogate_build::configure().compile(&protos, &["proto"]) {
        eprintln!("{error}");
        return Err("protogate-build failed; see the message above".into());
    }
    Ok(())
}
