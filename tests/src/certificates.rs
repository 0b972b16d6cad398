//! Test certificates made by the openssl CLI: a CA, a server certificate for
//! 127.0.0.1 and a client certificate, and nats-server's mutual-TLS block for them.

use std::process::Command;
use std::time::Duration;

use crate::run_tool;

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    run_tool(
        Command::new("openssl").args(args).current_dir(dir),
        b"",
        Duration::from_secs(60),
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by
/// the openssl CLI in `dir`: `ca.pem`, `server.pem`/`.key`, `client.pem`/`.key`.
/// Panics when openssl is missing.
pub fn make_certificates(dir: &std::path::Path) {
    let version = Command::new("openssl").arg("version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "the openssl CLI is needed to make the test certificates (Debian package openssl)"
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509", "-days", "2", "-subj", "/CN=cebus test CA"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    for (name, usage) in [
        ("server", "serverAuth\nsubjectAltName=IP:127.0.0.1"),
        ("client", "clientAuth"),
    ] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"),
        )
        .expect("write the extensions file");
        openssl(
            dir,
            &[
                &["req", "-new", "-subj", &format!("/CN={name}")][..],
                &ec,
                &["-keyout", &key, "-out", &csr],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
}

/// The nats-server `tls` block for the certificates of [`make_certificates`]
/// in `dir`: the server certificate, and clients must present one the CA
/// signed (mutual TLS).
pub fn nats_mutual_tls_config(dir: &std::path::Path) -> String {
    let path = |f: &str| dir.join(f).display().to_string();
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  \
         timeout: 5\n}}\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem")
    )
}
