//! The fleet examples (Dockerfile, contrib/container, contrib/kubernetes,
//! contrib/nomad) checked against each other and against the real binary by
//! tests/python/check_deploy.py: the Kubernetes manifest against the API
//! schema (kubernetes-validate, strict), the Nomad job parsed as HCL2, every
//! embedded Ringmaster config through `ringmaster check`, grace periods above
//! `shutdown_timeout`, probes on `http_endpoint`'s port, the Dockerfile's
//! COPY sources present. No container engine, kubelet or Nomad agent runs on
//! the test machines (docs/deploy.md says so); the init behaviour the image
//! relies on is tested in a real PID namespace by tests/init.rs.
//!
//! The validators come from the virtualenv named by RINGMASTER_TEST_VENV
//! (`bash tests/run.sh` installs them from PyPI); the test fails when it is
//! missing.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn fleet_examples_agree_with_each_other_and_with_ringmaster() {
    let venv = std::env::var("RINGMASTER_TEST_VENV")
        .expect("RINGMASTER_TEST_VENV is not set: run `bash tests/run.sh`, which installs kubernetes-validate and python-hcl2");
    let python = PathBuf::from(venv).join("bin/python");
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(&python)
        .arg(format!("{root}/tests/python/check_deploy.py"))
        .arg(env!("CARGO_BIN_EXE_ringmaster"))
        .arg(root)
        .arg(tmp.path())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "check_deploy.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
