//! Compiles the real-server contract suite only when `EVENTSTORE_URL` names a server, so a run
//! without one reports that suite as ignored (neither passed nor failed); and tells the
//! architecture test which platform to resolve the crate graph for.

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo::rustc-env=LEDGER_TESTS_TARGET={target}");
    println!("cargo::rustc-check-cfg=cfg(eventstore_server)");
    println!("cargo::rerun-if-env-changed=EVENTSTORE_URL");
    if std::env::var("EVENTSTORE_URL").is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=eventstore_server");
    }
}
