//! Build script: turns nginx-sys metadata into cfgs and tells tests where nginx is.
//!
//! `DEP_NGINX_*` is visible only because `nginx-sys` is a direct dependency (cargo#3544).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    // The helper process (fork, pipes, prctl), the epoll event flags and /proc are Linux's.
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        panic!("nginx-status-alert needs Linux: target_os \"{target_os}\" is not supported");
    }

    forward_list_cfg(
        "ngx_feature",
        "DEP_NGINX_FEATURES_CHECK",
        "DEP_NGINX_FEATURES",
    );
    forward_list_cfg("ngx_os", "DEP_NGINX_OS_CHECK", "DEP_NGINX_OS");
    upstream_resolve_cfg();

    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(build_dir) = env::var("DEP_NGINX_BUILD_DIR") {
        let nginx = PathBuf::from(&build_dir).join("nginx");
        // Not named STATUS_ALERT_NGINX_BINARY: cargo also sets rustc-env variables in the
        // environment of `cargo test`'s test processes, which would override the runtime
        // variable the harness lets users set to test another nginx (ci/test-debian).
        println!(
            "cargo::rustc-env=STATUS_ALERT_BUILT_NGINX={}",
            nginx.display()
        );
        record_nginx_path(&nginx);
    }
}

/// `cfg(ngx_upstream_resolve)`: the nginx being built against has `server ... resolve` in
/// `upstream` blocks (1.27.3 and later, with the upstream zone module): its
/// `ngx_http_upstream_server_t` then carries the `host` such a server resolves at run time.
fn upstream_resolve_cfg() {
    println!("cargo::rustc-check-cfg=cfg(ngx_upstream_resolve)");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    let version: u64 = env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let zone = env::var("DEP_NGINX_FEATURES")
        .is_ok_and(|f| f.split(',').any(|x| x.trim() == "http_upstream_zone"));
    if version >= 1_027_003 && zone {
        println!("cargo::rustc-cfg=ngx_upstream_resolve");
    }
}

/// Declares the allowed values of `cfg(name)` and sets the detected ones.
fn forward_list_cfg(name: &str, check_var: &str, value_var: &str) {
    println!("cargo::rerun-if-env-changed={check_var}");
    println!("cargo::rerun-if-env-changed={value_var}");
    let check = env::var(check_var).unwrap_or_else(|_| "any()".to_string());
    println!("cargo::rustc-check-cfg=cfg({name}, values({check}))");
    if let Ok(values) = env::var(value_var) {
        for value in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={name}=\"{value}\"");
        }
    }
}

/// Writes `target/<profile>/nginx-path` so that `ci/paths` and scripts find the nginx binary.
fn record_nginx_path(nginx: &std::path::Path) {
    // OUT_DIR is target/<profile>/build/<pkg>-<hash>/out
    let Some(profile_dir) = env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .and_then(|out| out.ancestors().nth(3).map(PathBuf::from))
    else {
        return;
    };
    let _ = fs::write(
        profile_dir.join("nginx-path"),
        format!("{}\n", nginx.display()),
    );
}
