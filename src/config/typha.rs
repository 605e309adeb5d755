//! The option `typha`: whether the leader deploys calico-typha
//! ([`crate::render::workloads::typha`] builds it).

use crate::text::{SHOWN, shorten};

/// `auto` deploys Typha above this many nodes ("We recommend using Typha if you have more
/// than 50 nodes", Calico's Typha manifest).
pub(crate) const AUTO_THRESHOLD: u64 = 50;
/// The option `typha`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TyphaMode {
    /// Deploy when the cluster has more than [`AUTO_THRESHOLD`] nodes.
    Auto,
    /// Always deploy.
    On,
    /// Never deploy (remove it if the charm deployed it).
    Off,
}

impl TyphaMode {
    /// Parse `auto`, `true` or `false` (exactly; a near miss gets "did you mean").
    pub fn parse(text: &str) -> Result<TyphaMode, String> {
        match text {
            "auto" => return Ok(TyphaMode::Auto),
            "true" => return Ok(TyphaMode::On),
            "false" => return Ok(TyphaMode::Off),
            _ => {}
        }
        let norm = text.trim().to_ascii_lowercase();
        let meant = match norm.as_str() {
            "auto" | "automatic" => Some("auto"),
            "true" | "yes" | "on" | "enabled" | "enable" | "1" => Some("true"),
            "false" | "no" | "off" | "disabled" | "disable" | "none" | "0" => Some("false"),
            _ => None,
        };
        let shown = shorten(format!("{text:?}"), SHOWN);
        Err(match meant {
            Some(m) => format!("{shown}: expected one of auto, true, false: did you mean {m:?}?"),
            None => format!("{shown}: expected one of auto, true, false"),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TyphaMode::Auto => "auto",
            TyphaMode::On => "true",
            TyphaMode::Off => "false",
        }
    }

    /// Whether the leader needs the cluster's node count to render (every mode but `false`:
    /// `auto` to decide, `true` for the replicas).
    pub(crate) fn needs_node_count(self) -> bool {
        self != TyphaMode::Off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_takes_exactly_auto_true_false() {
        assert_eq!(TyphaMode::parse("auto"), Ok(TyphaMode::Auto));
        assert_eq!(TyphaMode::parse("true"), Ok(TyphaMode::On));
        assert_eq!(TyphaMode::parse("false"), Ok(TyphaMode::Off));
        assert_eq!(
            TyphaMode::parse("Yes"),
            Err("\"Yes\": expected one of auto, true, false: did you mean \"true\"?".into())
        );
        assert_eq!(
            TyphaMode::parse("sometimes"),
            Err("\"sometimes\": expected one of auto, true, false".into())
        );
    }
}
