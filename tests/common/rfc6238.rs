//! TOTP as RFC 6238 defines it (HMAC-SHA-1, 30-second steps from the Unix epoch), over RFC
//! 4226's HOTP, with the RFC 4648 base32 a key is shown in: written here, for the API and the
//! browser suites (each includes this file), not taken from the server's library.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// RFC 4226's HOTP: HMAC-SHA-1 of the counter, dynamically truncated to `digits` digits.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let binary = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    let width = usize::try_from(digits).expect("a few digits");
    format!("{:0width$}", binary % 10u32.pow(digits))
}

/// The code at `unix_secs` (T0 = 0, X = 30 s).
pub fn totp(secret: &[u8], unix_secs: i64, digits: u32) -> String {
    let step = u64::try_from(unix_secs.div_euclid(30)).expect("a time after 1970");
    hotp(secret, step, digits)
}

/// RFC 4648 base32, either case, padded or not, spaces between groups ignored.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut bits, mut held) = (0u32, 0u32);
    for c in text
        .trim_end_matches('=')
        .chars()
        .filter(|c| !c.is_whitespace())
    {
        let value = match c.to_ascii_uppercase() {
            u @ 'A'..='Z' => u32::from(u) - u32::from('A'),
            d @ '2'..='7' => u32::from(d) - u32::from('2') + 26,
            other => panic!("{other:?} is not base32 (in {text:?})"),
        };
        bits = (bits << 5) | value;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push(u8::try_from(bits >> held).expect("one byte"));
            bits &= (1 << held) - 1;
        }
    }
    out
}

#[test]
fn the_test_generator_gives_the_rfc_6238_sha1_codes() {
    // RFC 6238 Appendix B, SHA-1 rows (eight digits); six digits are the same truncation mod 10^6.
    let secret = b"12345678901234567890";
    for (time, code) in [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ] {
        assert_eq!(totp(secret, time, 8), code, "T = {time}");
        assert_eq!(totp(secret, time, 6), code[2..], "T = {time}, six digits");
    }
    // RFC 4226 Appendix D: HOTP's six-digit values for counters 0 to 9.
    let hotp: Vec<String> = (0..10).map(|c| hotp(secret, c, 6)).collect();
    assert_eq!(
        hotp,
        [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489"
        ]
    );
    // The step boundary: 30 s per step, the code changes between 29 and 30.
    assert_eq!(totp(secret, 0, 6), totp(secret, 29, 6));
    assert_ne!(totp(secret, 29, 6), totp(secret, 30, 6));
}

#[test]
fn the_test_base32_decoder_reads_rfc_4648() {
    // RFC 4648 section 10, with and without the padding.
    for (encoded, decoded) in [
        ("", ""),
        ("MY======", "f"),
        ("MZXQ====", "fo"),
        ("MZXW6===", "foo"),
        ("MZXW6YQ=", "foob"),
        ("MZXW6YTB", "fooba"),
        ("MZXW6YTBOI======", "foobar"),
        ("MZXW6YTBOI", "foobar"),
        ("mzxw6ytboi", "foobar"),
    ] {
        assert_eq!(base32_decode(encoded), decoded.as_bytes(), "{encoded}");
    }
    assert_eq!(
        base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        b"12345678901234567890"
    );
    // As the set-up page shows a key: in groups of four.
    assert_eq!(
        base32_decode("GEZD GNBV GY3T QOJQ GEZDGNBVGY3TQOJQ"),
        b"12345678901234567890"
    );
}
