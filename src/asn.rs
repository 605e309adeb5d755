//! BGP AS numbers: plain integers or asdot (`"1.10"` = 65546), rendered as integers.

/// A 4-byte BGP AS number (1..=4294967295).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);
