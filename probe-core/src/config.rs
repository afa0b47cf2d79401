//! The environment switches the constructor reads.

/// Runtime configuration from the environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `RETRACE_HOOKS=1`: every hook trampoline calls `rt_hook`.
    pub hooks: bool,
    /// `RETRACE_SLOW_PATH=1`: every dispatch calls `rt_dispatch` (for tests).
    pub slow_path: bool,
    /// `RETRACE_RT_STANDALONE=1`: without a rewritten libpython, use a zeroed
    /// descriptor owned by the runtime so the modules can be tested.
    pub standalone: bool,
}

/// A switch is on only when its value is exactly `1`.
pub fn flag(value: Option<&str>) -> bool {
    value == Some("1")
}

impl Config {
    /// Builds the configuration from a variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let get = |name: &str| flag(lookup(name).as_deref());
        Config {
            hooks: get("RETRACE_HOOKS"),
            slow_path: get("RETRACE_SLOW_PATH"),
            standalone: get("RETRACE_RT_STANDALONE"),
        }
    }

    pub fn from_env() -> Config {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// The `hooks_enabled` word: all bits or none.
    pub fn hooks_enabled(&self) -> u64 {
        if self.hooks {
            u64::MAX
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_one_enables() {
        assert!(flag(Some("1")));
        for v in [None, Some(""), Some("0"), Some("yes"), Some("1 ")] {
            assert!(!flag(v), "{v:?}");
        }
    }

    #[test]
    fn reads_each_switch() {
        let c = Config::from_lookup(|n| (n == "RETRACE_HOOKS").then(|| "1".to_string()));
        assert_eq!(
            c,
            Config {
                hooks: true,
                slow_path: false,
                standalone: false
            }
        );
        assert_eq!(c.hooks_enabled(), u64::MAX);
        let c = Config::from_lookup(|n| (n != "RETRACE_HOOKS").then(|| "1".to_string()));
        assert!(c.slow_path && c.standalone && !c.hooks);
        assert_eq!(c.hooks_enabled(), 0);
    }
}
