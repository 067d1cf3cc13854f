//! Finding the tools the scenarios run that `cargo test` cannot install (shared by the API and
//! browser suites).

/// A tool the scenarios run that `cargo test` cannot install: the path in `$env` when set,
/// else `in_cache` under the user's cache folder (`$XDG_CACHE_HOME`, or `~/.cache`), where
/// `.ci/<name>-tools` installs it, if `usable` accepts it. `None` (the scenarios skip) when there
/// is none, unless `$required` is `required`: then it panics with `install`, the way to get it.
pub fn installed_tool(
    env: &str,
    in_cache: &str,
    usable: impl Fn(&std::path::Path) -> bool,
    required: &str,
    install: &str,
) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let found = std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join(in_cache))
        })
        .filter(|p| usable(p));
    if found.is_none() && std::env::var(required).is_ok_and(|v| v == "required") {
        panic!("{required}=required but {install}");
    }
    found
}
