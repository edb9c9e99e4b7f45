//! Error-log helpers: thin wrappers over ngx's logging macros.

/// Logs at `emerg`.
macro_rules! emerg {
    ( $log:expr, $($arg:tt)+ ) => ({
        ngx::ngx_log_error!(nginx_sys::NGX_LOG_EMERG, $log, $($arg)+);
    });
}

/// Logs at `error`.
macro_rules! error {
    ( $log:expr, $($arg:tt)+ ) => ({
        ngx::ngx_log_error!(nginx_sys::NGX_LOG_ERR, $log, $($arg)+);
    });
}

/// Logs at `warn`.
macro_rules! warn {
    ( $log:expr, $($arg:tt)+ ) => ({
        ngx::ngx_log_error!(nginx_sys::NGX_LOG_WARN, $log, $($arg)+);
    });
}

/// Logs at `notice`.
macro_rules! notice {
    ( $log:expr, $($arg:tt)+ ) => ({
        ngx::ngx_log_error!(nginx_sys::NGX_LOG_NOTICE, $log, $($arg)+);
    });
}

/// Logs at `alert`: alerting itself is not running.
macro_rules! alert {
    ( $log:expr, $($arg:tt)+ ) => ({
        ngx::ngx_log_error!(nginx_sys::NGX_LOG_ALERT, $log, $($arg)+);
    });
}
