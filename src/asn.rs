//! BGP AS numbers: plain integers or asdot (`"1.10"` = 65546), rendered as integers.

use std::fmt;
use std::str::FromStr;

/// A 4-byte BGP AS number (1..=4294967295).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

/// The largest AS number Calico's CRDs accept everywhere (`asNumber` is declared int32).
pub const INT32_MAX: u32 = 2_147_483_647;

/// What an AS number must look like, for error messages.
pub(crate) const EXPECTED: &str = "expected an AS number from 1 to 4294967295, as an integer \
     (64512) or an asdot string (\"1.10\" = 65546)";

/// Why a value is not an AS number. `Display` says what was found and what is expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsnError {
    #[error("{0} is out of range: {EXPECTED}")]
    OutOfRange(String),
    #[error("{0:?} is not an AS number: {EXPECTED}")]
    Malformed(String),
    #[error(
        "{0} was read as a decimal number, which loses asdot's trailing zeros: \
         quote asdot AS numbers (\"1.10\")"
    )]
    UnquotedAsdot(String),
    #[error("{0} is not an AS number: {EXPECTED}")]
    WrongType(String),
}

impl AsNumber {
    /// An AS number from an integer; 0 and values above 4294967295 are refused.
    pub fn from_integer(n: i128) -> Result<AsNumber, AsnError> {
        match u32::try_from(n) {
            Ok(v) if v >= 1 => Ok(AsNumber(v)),
            _ => Err(AsnError::OutOfRange(n.to_string())),
        }
    }

    /// Parse decimal (`"64512"`) or asdot (`"1.10"`, each half 0..=65535) text.
    pub fn parse(text: &str) -> Result<AsNumber, AsnError> {
        let t = text.trim();
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
        if let Some((hi, lo)) = t.split_once('.') {
            if !digits(hi) || !digits(lo) {
                return Err(AsnError::Malformed(text.to_string()));
            }
            let (Ok(hi), Ok(lo)) = (hi.parse::<u32>(), lo.parse::<u32>()) else {
                return Err(AsnError::Malformed(text.to_string()));
            };
            if hi > 65535 || lo > 65535 {
                return Err(AsnError::OutOfRange(format!("{text:?}")));
            }
            return AsNumber::from_integer(i128::from(hi) * 65536 + i128::from(lo))
                .map_err(|_| AsnError::OutOfRange(format!("{text:?}")));
        }
        if !digits(t) {
            return Err(AsnError::Malformed(text.to_string()));
        }
        match t.parse::<u64>() {
            Ok(n) => AsNumber::from_integer(i128::from(n)),
            Err(_) => Err(AsnError::OutOfRange(format!("{text:?}"))),
        }
    }

    /// From a parsed number: an integer (as i64 or u64); anything else is an unquoted
    /// decimal such as `1.10`, whose trailing zero the parser has already lost.
    fn from_number(
        signed: Option<i64>,
        unsigned: Option<u64>,
        shown: &dyn std::fmt::Display,
    ) -> Result<AsNumber, AsnError> {
        match (signed, unsigned) {
            (Some(i), _) => AsNumber::from_integer(i128::from(i)),
            (None, Some(u)) => AsNumber::from_integer(i128::from(u)),
            (None, None) => Err(AsnError::UnquotedAsdot(shown.to_string())),
        }
    }

    /// From a JSON value: an integer or a decimal/asdot string.
    pub fn from_json(value: &serde_json::Value) -> Result<AsNumber, AsnError> {
        use serde_json::Value;
        match value {
            Value::Number(n) => AsNumber::from_number(n.as_i64(), n.as_u64(), n),
            Value::String(s) => AsNumber::parse(s),
            other => Err(AsnError::WrongType(other.to_string())),
        }
    }

    /// From a YAML value: an integer or a decimal/asdot string. An unquoted `1.10` is a YAML
    /// float whose trailing zero is already lost, so it is refused with a hint to quote it.
    pub fn from_yaml(value: &serde_yaml::Value) -> Result<AsNumber, AsnError> {
        use serde_yaml::Value;
        match value {
            Value::Number(n) => AsNumber::from_number(n.as_i64(), n.as_u64(), n),
            Value::String(s) => AsNumber::parse(s),
            Value::Tagged(t) => AsNumber::from_yaml(&t.value),
            Value::Null => Err(AsnError::WrongType("null".to_string())),
            Value::Bool(b) => Err(AsnError::WrongType(b.to_string())),
            Value::Sequence(_) => Err(AsnError::WrongType("a list".to_string())),
            Value::Mapping(_) => Err(AsnError::WrongType("a map".to_string())),
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether Calico's CRDs (`asNumber: integer, format: int32`) accept it everywhere.
    pub fn fits_int32(self) -> bool {
        self.0 <= INT32_MAX
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for AsNumber {
    type Err = AsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AsNumber::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_decimal_and_asdot() {
        assert_eq!(AsNumber::parse("64512"), Ok(AsNumber(64512)));
        assert_eq!(AsNumber::parse("1.10"), Ok(AsNumber(65546)));
        assert_eq!(AsNumber::parse("0.1"), Ok(AsNumber(1)));
        assert_eq!(AsNumber::parse("65535.65535"), Ok(AsNumber(u32::MAX)));
        assert_eq!(AsNumber::parse("4294967295"), Ok(AsNumber(u32::MAX)));
        assert_eq!(AsNumber(65546).to_string(), "65546");
    }

    #[test]
    fn refuses_out_of_range_and_malformed() {
        for bad in [
            "0",
            "0.0",
            "4294967296",
            "65536.0",
            "1.65536",
            "",
            "-1",
            "1.",
            ".1",
            "1.2.3",
            "x",
            "+5",
            "99999999999999999999",
        ] {
            let err = AsNumber::parse(bad).expect_err(bad);
            assert!(
                err.to_string()
                    .contains("expected an AS number from 1 to 4294967295"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reads_json_and_yaml() {
        assert_eq!(AsNumber::from_json(&json!(64512)), Ok(AsNumber(64512)));
        assert_eq!(AsNumber::from_json(&json!("1.10")), Ok(AsNumber(65546)));
        assert!(AsNumber::from_json(&json!(-5)).is_err());
        assert!(AsNumber::from_json(&json!(true)).is_err());
        assert!(matches!(
            AsNumber::from_json(&json!(1.1)),
            Err(AsnError::UnquotedAsdot(_))
        ));
        let y: serde_yaml::Value = serde_yaml::from_str("1.10").unwrap_or_default();
        let err = AsNumber::from_yaml(&y).expect_err("float");
        assert!(err.to_string().contains("quote asdot"), "{err}");
        let y: serde_yaml::Value = serde_yaml::from_str("'1.10'").unwrap_or_default();
        assert_eq!(AsNumber::from_yaml(&y), Ok(AsNumber(65546)));
        assert!(!AsNumber(2_147_483_648).fits_int32());
        assert!(AsNumber(INT32_MAX).fits_int32());
    }
}
