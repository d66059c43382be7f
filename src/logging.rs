//! Which log lines reach stderr. `TUNE_LOG` names a level for tune's own lines, while the
//! libraries beneath stay at warnings: at `info`, cubecl (the CUDA build) prints every kernel's
//! IR after every compiler pass: 359 MB from a 5-step bench on the H200, which pushed the
//! device check's bench and training past their time limits. A full directive list
//! (`info,cubecl=debug`) is taken as written, for whoever debugs a library.

/// The `EnvFilter` directives for a `TUNE_LOG` value (None: unset).
pub fn directives(tune_log: Option<&str>) -> String {
    let value = tune_log.map(str::trim).filter(|v| !v.is_empty()).unwrap_or("info");
    let level = value.to_ascii_lowercase();
    if ["off", "error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
        format!("warn,tune={level},tune_kernels={level}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn a_level_applies_to_tune_and_leaves_libraries_at_warnings() {
        assert_eq!(directives(None), "warn,tune=info,tune_kernels=info");
        assert_eq!(directives(Some("debug")), "warn,tune=debug,tune_kernels=debug");
        assert_eq!(directives(Some(" WARN ")), "warn,tune=warn,tune_kernels=warn");
        assert_eq!(directives(Some("")), "warn,tune=info,tune_kernels=info");
    }

    #[test]
    fn directives_are_taken_as_written() {
        assert_eq!(directives(Some("info,cubecl=debug")), "info,cubecl=debug");
        assert_eq!(directives(Some("tune::study=trace")), "tune::study=trace");
    }
}
