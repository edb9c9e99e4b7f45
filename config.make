# Makefile part of the nginx build-system hook (see config): the rule that runs cargo.
#
# make cannot see Rust sources or Cargo.lock changes, so the library depends on a target that
# never exists and cargo, which tracks all of that, decides whether anything needs rebuilding.

cat << END                                                    >> $NGX_MAKEFILE

$status_alert_lib: .status-alert-cargo
	NGINX_SOURCE_DIR="$status_alert_nginx_src" \\
	NGINX_BUILD_DIR="$status_alert_objs" \\
	$status_alert_cargo rustc \\
		--manifest-path "$status_alert_crate_dir/Cargo.toml" \\
		--lib \\
		--crate-type staticlib \\
		--release \\
		--no-default-features \\
		--target-dir "$status_alert_target_dir" \\
		$NGX_RUSTC_OPT

.status-alert-cargo:

END

if [ "$status_alert_link" = DYNAMIC ]; then
    # The generated link rule of the .so lists only C objects; add the library.
    cat << END                                                >> $NGX_MAKEFILE
$NGX_OBJS${ngx_dirsep}ngx_http_status_alert_module$ngx_modext: $status_alert_lib

END
fi
