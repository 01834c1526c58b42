//! Django's password forms, made and verified locally so no password is ever sent to the server
//! in a query: `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>` (Django's default hasher) and the
//! unusable form `!` + 40 random characters (`make_password(None)`).

use aspects_core::Verification;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;
use rand::distr::Alphanumeric;
use sha2::Sha256;

/// Django 5.2's `PBKDF2PasswordHasher.iterations`: the LMS would re-hash a smaller count at the
/// next login, so new hashes use exactly this.
pub const ITERATIONS: u32 = 1_000_000;
const ALGORITHM: &str = "pbkdf2_sha256";

/// `get_random_string(n)`: letters and digits.
pub fn random_string(n: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(n).map(char::from).collect()
}

/// A new hash of `password` with a fresh 22-character salt (Django's 128 bits of salt entropy).
pub fn hash(password: &str) -> String {
    hash_with(password, &random_string(22), ITERATIONS)
}

fn hash_with(password: &str, salt: &str, iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    format!("{ALGORITHM}${iterations}${salt}${}", STANDARD.encode(out))
}

/// `set_unusable_password()`: no password logs in.
pub fn unusable() -> String {
    format!("!{}", random_string(40))
}

/// Whether a stored value is a Django password hash (DOT >= 2 hashes client secrets this way)
/// rather than a plaintext value.
pub fn is_hash(stored: &str) -> bool {
    stored.starts_with(&format!("{ALGORITHM}$"))
}

/// Whether `password` is the one `stored` was made from, recomputed with the stored salt and
/// iteration count (so a hash the LMS upgraded still verifies).
pub fn verify(password: &str, stored: &str) -> Verification {
    if stored.starts_with('!') || stored.is_empty() {
        return Verification::Differs;
    }
    let parts: Vec<&str> = stored.split('$').collect();
    match parts.as_slice() {
        [ALGORITHM, iterations, salt, _] => match iterations.parse::<u32>() {
            Ok(n) if n > 0 && hash_with(password, salt, n).as_bytes() == stored.as_bytes() => Verification::Matches,
            Ok(n) if n > 0 => Verification::Differs,
            _ => Verification::Unknown("the stored pbkdf2_sha256 hash is malformed".into()),
        },
        [algorithm, ..] if parts.len() > 1 => Verification::Unknown(format!(
            "the password is stored with Django's `{algorithm}` hasher, which aspects cannot verify; apply stores \
             a pbkdf2_sha256 hash"
        )),
        _ => Verification::Unknown("the stored password is not a Django password hash".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_djangos_pbkdf2_sha256() {
        // Django 5.2: PBKDF2PasswordHasher().encode("pw", "saltsaltsalt", 1000).
        let h = hash_with("pw", "saltsaltsalt", 1000);
        assert_eq!(h, "pbkdf2_sha256$1000$saltsaltsalt$4uzIwmR5CBzbkuSnP3BSItaBwmu0UF1J/6zIhqZ6Auw=");
        assert_eq!(verify("pw", &h), Verification::Matches);
        assert_eq!(verify("other", &h), Verification::Differs);
        assert_eq!(verify("pw", &unusable()), Verification::Differs);
        assert!(matches!(verify("pw", "argon2$argon2id$x"), Verification::Unknown(m) if m.contains("argon2")));
        assert_eq!(unusable().len(), 41);
        assert!(is_hash(&h) && !is_hash("plain-secret"));
    }
}
