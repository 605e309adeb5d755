//! AS numbers from arbitrary text, JSON and YAML: never a panic, and every accepted value
//! round-trips through Display and parse.
#![no_main]

use calico_charm::asn::{AsNumber, INT32_MAX};
use libfuzzer_sys::fuzz_target;

fn accepted(n: AsNumber, from: &str) {
    assert!(n.get() >= 1, "{from:?} gave AS 0");
    let shown = n.to_string();
    assert_eq!(AsNumber::parse(&shown), Ok(n), "{from:?} -> {shown}");
    assert_eq!(shown.parse::<AsNumber>(), Ok(n));
    assert_eq!(AsNumber::from_json(&serde_json::json!(n.get())), Ok(n));
    assert_eq!(n.fits_int32(), n.get() <= INT32_MAX);
    // The asdot form of the same number parses to it too.
    let asdot = format!("{}.{}", n.get() >> 16, n.get() & 0xffff);
    assert_eq!(AsNumber::parse(&asdot), Ok(n), "{asdot}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AsNumber::parse(text) {
        Ok(n) => {
            accepted(n, text);
            // Accepted text is digits, optionally one dot, around whitespace.
            let t = text.trim();
            assert!(
                t.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
                "{text:?}"
            );
            if !t.contains('.') {
                assert_eq!(t.parse::<u64>().ok(), Some(u64::from(n.get())), "{text:?}");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        match AsNumber::from_json(&v) {
            Ok(n) => accepted(n, text),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        match AsNumber::from_yaml(&v) {
            Ok(n) => accepted(n, text),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    // From an integer: accepted exactly for 1..=u32::MAX.
    if data.len() >= 16 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&data[..16]);
        let i = i128::from_le_bytes(b);
        let r = AsNumber::from_integer(i);
        assert_eq!(r.is_ok(), (1..=i128::from(u32::MAX)).contains(&i), "{i}");
    }
});
