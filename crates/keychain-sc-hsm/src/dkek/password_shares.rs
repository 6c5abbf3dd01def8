//! n-of-m protection of one share file's password, as `sc-hsm-tool --pwd-shares-threshold t
//! --pwd-shares-total n` does it: Shamir's scheme over GF(p) for a 64-bit safe prime p.

use std::fmt::{self, Write as _};

use keychain_core::{Error, Result, SecretBytes};
use zeroize::Zeroize;

/// Length of a threshold-protected share file password (8 random bytes, top bit cleared).
pub const PASSWORD_LEN: usize = 8;

/// One custodian's part of a share file password: the prime, the share ID x and the value y.
///
/// `Debug` hides the value; [`PasswordShare::to_sheet`] prints it, for the custodian's sheet.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordShare {
    prime: u64,
    id: u64,
    value: u64,
}

impl Drop for PasswordShare {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl fmt::Debug for PasswordShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordShare")
            .field(
                "prime",
                &format_args!("{}", colon_hex(&self.prime.to_be_bytes())),
            )
            .field("id", &self.id)
            .field("value", &format_args!("[redacted]"))
            .finish()
    }
}

/// How the share ID line of a sheet is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ShareIdRadix {
    /// Decimal, as the tool prints it (the default).
    #[default]
    Decimal,
    /// Hexadecimal: the original tool's reader parses IDs this way (so its ID 10 is 16); only
    /// for shares produced by a program that followed that reader.
    Hex,
}

impl PasswordShare {
    /// A share from its parts.
    ///
    /// # Errors
    /// [`keychain_core::ErrorKind::InvalidInput`] if `prime` is not an odd prime, `id` is 0 or
    /// not below `prime`, or `value` is not below `prime`.
    pub fn new(prime: u64, id: u64, value: u64) -> Result<Self> {
        if prime < 3 || !is_prime(prime) {
            return Err(Error::invalid_input(
                "the password share's prime is not prime",
            ));
        }
        if id == 0 || id >= prime {
            return Err(Error::invalid_input(format!(
                "password share ID {id} is outside 1..prime"
            )));
        }
        if value >= prime {
            return Err(Error::invalid_input(format!(
                "password share {id}: the value is not below the prime"
            )));
        }
        Ok(Self { prime, id, value })
    }

    /// The prime p.
    pub fn prime(&self) -> u64 {
        self.prime
    }

    /// The share ID (the x coordinate, 1..=n).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The share value as minimal-length big-endian bytes (the y coordinate). Secret.
    pub fn value_bytes(&self) -> SecretBytes {
        SecretBytes::new(minimal_be(self.value))
    }

    /// The three lines a custodian keeps, in the tool's format:
    ///
    /// ```text
    /// Prime : f5:56:46:c9:a5:a1:01:87
    /// Share ID : 1
    /// Share value : 12:45:78:ab:df:12:45:77
    /// ```
    ///
    /// The text contains the secret share value; hand it only to its custodian.
    pub fn to_sheet(&self) -> String {
        let mut value = minimal_be(self.value);
        let text = format!(
            "Prime : {}\nShare ID : {}\nShare value : {}\n",
            colon_hex(&self.prime.to_be_bytes()),
            self.id,
            colon_hex(&value)
        );
        value.zeroize();
        text
    }
}

/// A new threshold-protected share file password: 8 random bytes (top bit cleared) and its `total`
/// shares, any `threshold` of which rebuild it. The prime is a fresh random 64-bit safe prime;
/// share IDs are 1..=total.
///
/// # Errors
/// [`keychain_core::ErrorKind::InvalidInput`] unless `2 <= threshold <= total <= 255`;
/// [`keychain_core::ErrorKind::Unexpected`] if the random generator fails.
pub fn split_password(threshold: u8, total: u8) -> Result<(SecretBytes, Vec<PasswordShare>)> {
    check_threshold(threshold, total)?;
    let mut bytes = [0u8; PASSWORD_LEN];
    crate::dkek::fill_random(&mut bytes)?;
    bytes[0] &= 0x7f;
    let mut secret = u64::from_be_bytes(bytes);
    bytes.zeroize();
    let prime = random_safe_prime()?;
    let mut coefficients = Vec::with_capacity(usize::from(threshold) - 1);
    for _ in 1..threshold {
        coefficients.push(random_below(prime)?);
    }
    let shares = split_with(secret, &coefficients, prime, total);
    let password = SecretBytes::from_slice(&secret.to_be_bytes());
    secret.zeroize();
    coefficients.zeroize();
    Ok((password, shares?))
}

/// Splits `secret` with the polynomial `secret + c[0]·x + c[1]·x² + …` mod `prime` into shares at
/// x = 1..=total. Deterministic; for test vectors and for callers bringing their own randomness
/// (use [`split_password`] otherwise).
///
/// # Errors
/// [`keychain_core::ErrorKind::InvalidInput`] if `prime` is not prime, or `secret` or a
/// coefficient is not below it, or `total` is 0.
pub fn split_with(
    secret: u64,
    coefficients: &[u64],
    prime: u64,
    total: u8,
) -> Result<Vec<PasswordShare>> {
    if prime < 3 || !is_prime(prime) {
        return Err(Error::invalid_input("the modulus is not prime"));
    }
    if secret >= prime || coefficients.iter().any(|&c| c >= prime) {
        return Err(Error::invalid_input(
            "the secret and coefficients must be below the prime",
        ));
    }
    if total == 0 {
        return Err(Error::invalid_input("at least one share is needed"));
    }
    (1..=u64::from(total))
        .map(|x| {
            // Horner, from the highest coefficient down to the secret.
            let mut y = 0u64;
            for &c in coefficients.iter().rev() {
                y = add_mod(mul_mod(y, x, prime), c, prime);
            }
            y = add_mod(mul_mod(y, x, prime), secret, prime);
            PasswordShare::new(prime, x, y)
        })
        .collect()
}

/// Rebuilds the 8-byte password from at least `threshold` shares by Lagrange interpolation at 0.
/// Extra shares are fine (they lie on the same polynomial); the result is left-padded to 8 bytes,
/// unlike the original tool, which drops a leading zero byte.
///
/// # Errors
/// [`keychain_core::ErrorKind::InvalidInput`] if there are no shares, their primes differ, an ID
/// repeats, or the result has its top bit set (the tool's passwords never do, so a share is wrong
/// or one is missing).
pub fn reconstruct_password(shares: &[PasswordShare]) -> Result<SecretBytes> {
    let first = shares
        .first()
        .ok_or_else(|| Error::invalid_input("no password shares given"))?;
    let p = first.prime;
    for (i, s) in shares.iter().enumerate() {
        if s.prime != p {
            return Err(Error::invalid_input(
                "the password shares name different primes: they belong to different passwords",
            ));
        }
        if shares[..i].iter().any(|o| o.id == s.id) {
            return Err(Error::invalid_input(format!(
                "password share ID {} is given twice",
                s.id
            )));
        }
    }
    let mut secret = 0u64;
    for (i, si) in shares.iter().enumerate() {
        let mut num = 1u64;
        let mut den = 1u64;
        for (j, sj) in shares.iter().enumerate() {
            if i != j {
                num = mul_mod(num, sj.id, p);
                den = mul_mod(den, sub_mod(sj.id, si.id, p), p);
            }
        }
        let term = mul_mod(si.value, mul_mod(num, inv_mod(den, p), p), p);
        secret = add_mod(secret, term, p);
    }
    if secret >> 63 != 0 {
        secret.zeroize();
        return Err(Error::invalid_input(
            "the password shares do not fit together: one is wrong, or too few were given",
        ));
    }
    let password = SecretBytes::from_slice(&secret.to_be_bytes());
    secret.zeroize();
    Ok(password)
}

/// The custodians' sheets, one block per share, headed "Share i of n".
pub fn format_sheets(shares: &[PasswordShare]) -> String {
    let mut out = String::new();
    for (i, s) in shares.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "Share {} of {}\n", i + 1, shares.len());
        out.push_str(&s.to_sheet());
    }
    out
}

/// Reads shares back from sheet text: every `Prime`, `Share ID` and `Share value` line, in any
/// case, with `:` or spaces between the bytes (or none); other lines are ignored. A share is
/// complete at its value line; the prime may be given once for all shares.
///
/// # Errors
/// [`keychain_core::ErrorKind::InvalidInput`] for a malformed value, a value line without a
/// prime or ID before it, or no share at all.
pub fn parse_sheets(text: &str, radix: ShareIdRadix) -> Result<Vec<PasswordShare>> {
    let mut prime: Option<u64> = None;
    let mut id: Option<u64> = None;
    let mut shares = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let lower = line.to_ascii_lowercase();
        let lineno = n + 1;
        if let Some(rest) = field(&lower, line, "prime") {
            prime =
                Some(parse_u64_bytes(rest).map_err(|e| e.with_context(format!("line {lineno}")))?);
        } else if let Some(rest) = field(&lower, line, "share id") {
            id = Some(parse_id(rest, radix).map_err(|e| e.with_context(format!("line {lineno}")))?);
        } else if let Some(rest) = field(&lower, line, "share value") {
            let mut value =
                parse_u64_bytes(rest).map_err(|e| e.with_context(format!("line {lineno}")))?;
            let (Some(p), Some(x)) = (prime, id.take()) else {
                value.zeroize();
                return Err(Error::invalid_input(format!(
                    "line {lineno}: a share value needs a prime and a share ID before it"
                )));
            };
            let share = PasswordShare::new(p, x, value);
            value.zeroize();
            shares.push(share?);
        }
    }
    if shares.is_empty() {
        return Err(Error::invalid_input("no password share found in the text"));
    }
    Ok(shares)
}

/// The rest of `line` after `label` and an optional colon, if `line` starts with `label` as a
/// whole word ("Share identifier" is not "Share ID").
fn field<'a>(lower: &str, line: &'a str, label: &str) -> Option<&'a str> {
    if !lower.starts_with(label) {
        return None;
    }
    let rest = &line[label.len()..];
    if !(rest.is_empty() || rest.starts_with(':') || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    let rest = rest.trim_start();
    Some(rest.strip_prefix(':').unwrap_or(rest).trim())
}

fn parse_id(text: &str, radix: ShareIdRadix) -> Result<u64> {
    let bad = || Error::invalid_input("a share ID is a number");
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).map_err(|_| bad());
    }
    match radix {
        ShareIdRadix::Decimal => text.parse().map_err(|_| bad()),
        ShareIdRadix::Hex => u64::from_str_radix(text, 16).map_err(|_| bad()),
    }
}

/// Hex bytes with `:` or whitespace between them (or one run of hex digits) as a big-endian
/// number of at most 8 significant bytes.
fn parse_u64_bytes(text: &str) -> Result<u64> {
    let bad = || Error::invalid_input("expected hexadecimal bytes such as f5:56:46:c9");
    let mut bytes: Vec<u8> = Vec::new();
    for group in text.split(|c: char| c == ':' || c.is_whitespace()) {
        if group.is_empty() {
            continue;
        }
        if group.len() == 1 {
            bytes.push(u8::from_str_radix(group, 16).map_err(|_| bad())?);
        } else {
            bytes.extend(hex::decode(group).map_err(|_| bad())?);
        }
    }
    if bytes.is_empty() {
        return Err(bad());
    }
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    if significant.len() > 8 {
        bytes.zeroize();
        return Err(Error::invalid_input("the number is longer than 8 bytes"));
    }
    let mut buf = [0u8; 8];
    buf[8 - significant.len()..].copy_from_slice(significant);
    bytes.zeroize();
    let n = u64::from_be_bytes(buf);
    buf.zeroize();
    Ok(n)
}

fn check_threshold(threshold: u8, total: u8) -> Result<()> {
    if threshold < 2 || threshold > total {
        return Err(Error::invalid_input(format!(
            "a {threshold}-of-{total} split is not possible: need 2 <= threshold <= total"
        )));
    }
    Ok(())
}

fn minimal_be(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    bytes[start..].to_vec()
}

fn colon_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    crate::dkek::fill_random(&mut b)?;
    let n = u64::from_be_bytes(b);
    b.zeroize();
    Ok(n)
}

/// Uniform in 0..bound by rejection sampling.
fn random_below(bound: u64) -> Result<u64> {
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let r = random_u64()?;
        if r < zone {
            return Ok(r % bound);
        }
    }
}

/// A random safe prime p = 2q + 1 with q prime and 2^63 <= p < 2^64.
fn random_safe_prime() -> Result<u64> {
    const SMALL: [u64; 24] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    ];
    loop {
        let q = (random_u64()? >> 1) | (1 << 62) | 1;
        let p = 2 * q + 1;
        if SMALL
            .iter()
            .any(|&r| q.is_multiple_of(r) || p.is_multiple_of(r))
        {
            continue;
        }
        if is_prime(q) && is_prime(p) {
            return Ok(p);
        }
    }
}

fn add_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) + u128::from(b)) % u128::from(m)) as u64
}

fn sub_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) + u128::from(m) - u128::from(b % m)) % u128::from(m)) as u64
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    acc
}

/// The inverse mod a prime, by Fermat.
fn inv_mod(a: u64, p: u64) -> u64 {
    pow_mod(a, p - 2, p)
}

/// Deterministic Miller–Rabin for all 64-bit numbers (these 12 bases suffice below 3.3·10^24).
fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for &b in &BASES {
        if n.is_multiple_of(b) {
            return n == b;
        }
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'bases: for &a in &BASES {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const P: u64 = 0xf556_46c9_a5a1_0187;

    #[test]
    fn reference_vector() {
        let shares = split_with(0x1122_3344_5566_7788, &[0x0123_4567_89ab_cdef], P, 3).unwrap();
        let values: Vec<String> = shares
            .iter()
            .map(|s| colon_hex(s.value_bytes().expose()))
            .collect();
        assert_eq!(
            values,
            [
                "12:45:78:ab:df:12:45:77",
                "13:68:be:13:68:be:13:66",
                "14:8c:03:7a:f2:69:e1:55"
            ]
        );
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let two = [shares[pair[0]].clone(), shares[pair[1]].clone()];
            let pw = reconstruct_password(&two).unwrap();
            assert_eq!(hex::encode(pw.expose()), "1122334455667788");
        }
        let all = reconstruct_password(&shares).unwrap();
        assert_eq!(hex::encode(all.expose()), "1122334455667788");
    }

    #[test]
    fn reference_prime_is_safe() {
        assert!(is_prime(P));
        assert!(is_prime((P - 1) / 2));
    }

    #[test]
    fn sheet_format_round_trips() {
        let shares = split_with(0x1122_3344_5566_7788, &[0x0123_4567_89ab_cdef], P, 3).unwrap();
        assert_eq!(
            shares[0].to_sheet(),
            "Prime : f5:56:46:c9:a5:a1:01:87\nShare ID : 1\nShare value : 12:45:78:ab:df:12:45:77\n"
        );
        let text = format_sheets(&shares);
        let back = parse_sheets(&text, ShareIdRadix::Decimal).unwrap();
        assert_eq!(back, shares);
    }

    #[test]
    fn tolerant_reading() {
        let text = "\
            PRIME: F5 56 46 C9 A5 A1 01 87\n\
            share id: 3\n\
            share value : 14 8C 03 7A F2 69 E1 55\n\
            Share ID : 0x1\n\
            Share value : 124578abdf124577\n";
        let shares = parse_sheets(text, ShareIdRadix::Decimal).unwrap();
        assert_eq!(shares.len(), 2);
        assert_eq!((shares[0].id(), shares[1].id()), (3, 1));
        let pw = reconstruct_password(&shares).unwrap();
        assert_eq!(hex::encode(pw.expose()), "1122334455667788");
        // The original reader's hex IDs, only on request.
        let hex_ids = "Prime : f5:56:46:c9:a5:a1:01:87\nShare ID : 10\nShare value : 01\n";
        assert_eq!(
            parse_sheets(hex_ids, ShareIdRadix::Hex).unwrap()[0].id(),
            16
        );
        assert_eq!(
            parse_sheets(hex_ids, ShareIdRadix::Decimal).unwrap()[0].id(),
            10
        );
    }

    #[test]
    fn leading_zero_secret_keeps_eight_bytes() {
        let shares = split_with(0x0022_3344_5566_7788, &[5, 7], P, 4).unwrap();
        let pw = reconstruct_password(&shares[1..]).unwrap();
        assert_eq!(pw.expose(), &0x0022_3344_5566_7788u64.to_be_bytes());
    }

    #[test]
    fn generated_split_rebuilds() {
        let (pw, shares) = split_password(3, 5).unwrap();
        assert_eq!(pw.len(), 8);
        assert_eq!(pw.expose()[0] & 0x80, 0);
        let p = shares[0].prime();
        assert!(p >> 63 == 1 && is_prime(p) && is_prime((p - 1) / 2));
        assert_eq!(
            shares.iter().map(PasswordShare::id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let text = format_sheets(&[shares[4].clone(), shares[0].clone(), shares[2].clone()]);
        let back = parse_sheets(&text, ShareIdRadix::Decimal).unwrap();
        assert_eq!(reconstruct_password(&back).unwrap().expose(), pw.expose());
        assert!(split_password(1, 3).is_err());
        assert!(split_password(4, 3).is_err());
    }

    #[test]
    fn inconsistent_shares_are_rejected() {
        let shares = split_with(1, &[2], P, 3).unwrap();
        let dup = [shares[0].clone(), shares[0].clone()];
        assert!(reconstruct_password(&dup).is_err());
        assert!(reconstruct_password(&[]).is_err());
        let other = PasswordShare::new(P - 2 - 2, 2, 1);
        assert!(
            other.is_err() || reconstruct_password(&[shares[0].clone(), other.unwrap()]).is_err()
        );
        assert!(format!("{:?}", shares[0]).contains("[redacted]"));
    }
}
