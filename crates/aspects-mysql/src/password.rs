//! Checking a user's password without reading it back and without ever logging in as the
//! account: the stored form is recomputed locally (`mysql_native_password`, MariaDB `ed25519`,
//! MySQL `caching_sha2_password` and `sha256_password`); anything else is reported as unknown,
//! with the reason. New `caching_sha2_password` forms are made here too, with a fresh salt, so
//! no password crosses the wire.

use aspects_core::Verification;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use curve25519_dalek::EdwardsPoint;
use sha1::{Digest, Sha1};
use sha2::{Sha256, Sha512};

use crate::sql;

/// `'*' + UPPER(HEX(SHA1(SHA1(pw))))`, what `mysql.user.authentication_string` holds for
/// `mysql_native_password` (empty for an empty password, as the server does).
pub fn native_hash(password: &str) -> String {
    if password.is_empty() {
        return String::new();
    }
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1.as_slice());
    format!("*{}", hex::encode_upper(stage2.as_slice()))
}

/// Every form of a password that a statement may carry, for scrubbing error messages: the
/// plaintext, its escaped literal body, the native hash in both cases and the ed25519 key.
pub fn secret_forms(password: &str) -> Vec<String> {
    let escaped = sql::literal(password);
    let hash = native_hash(password);
    vec![
        password.to_owned(),
        escaped[1..escaped.len() - 1].to_owned(),
        hash.to_lowercase(),
        hash,
        ed25519_hash(password),
    ]
}

pub const NATIVE: &str = "mysql_native_password";
pub const ED25519: &str = "ed25519";
pub const CACHING_SHA2: &str = "caching_sha2_password";
/// MySQL's deprecated SHA-256 plugin: verified here, never set.
pub const SHA256: &str = "sha256_password";
/// The plugins a `mysql_user` may ask for: each one's stored form is recomputed here.
pub const SETTABLE: &[&str] = &[NATIVE, ED25519, CACHING_SHA2];

/// The plugin as compared and shown: lowercase, and an empty plugin (an old-style account) is
/// the native one.
pub fn canonical_plugin(plugin: &str) -> String {
    if plugin.is_empty() { NATIVE.to_owned() } else { plugin.to_lowercase() }
}

/// MariaDB's `ed25519` plugin: the public key of the Ed25519 key pair whose secret scalar is
/// the clamped SHA-512 of the password, in base64 without padding (what `ed25519_password()`
/// returns and `mysql.user.authentication_string` holds).
pub fn ed25519_hash(password: &str) -> String {
    let digest = Sha512::digest(password.as_bytes());
    let mut scalar = [0u8; 32];
    scalar.copy_from_slice(&digest[..32]);
    let public = EdwardsPoint::mul_base_clamped(scalar).compress();
    STANDARD_NO_PAD.encode(public.as_bytes())
}

/// Plugins that authenticate without any password the server stores: an account on one of them
/// certainly does not have the desired password.
const PASSWORDLESS: &[&str] = &["unix_socket", "auth_socket", "named_pipe", "gssapi", "authentication_windows"];

/// Compares the desired password with what `mysql.user` stores for the account, without
/// logging in as it: a login can count toward `max_password_errors` (MariaDB) or
/// `FAILED_LOGIN_ATTEMPTS` (MySQL) and lock the account, and a login refused for host reasons
/// would read as "differs". What cannot be recomputed here is `Unknown`, with the reason.
pub fn verify(plugin: &str, stored: &str, password: &str) -> Verification {
    let same = |computed: String| if computed == stored { Verification::Matches } else { Verification::Differs };
    match canonical_plugin(plugin).as_str() {
        NATIVE => same(native_hash(password)),
        ED25519 => same(ed25519_hash(password)),
        // MySQL stores nothing for an empty password.
        CACHING_SHA2 | SHA256 if stored.is_empty() => {
            if password.is_empty() {
                Verification::Matches
            } else {
                Verification::Differs
            }
        }
        CACHING_SHA2 => match caching_sha2_hash(password, stored) {
            Some(computed) => same(computed),
            None => Verification::Unknown("the stored caching_sha2_password hash is not in the `$A$` form".into()),
        },
        SHA256 => match sha256_password_hash(password, stored) {
            Some(computed) => same(computed),
            None => Verification::Unknown("the stored sha256_password hash is not in the `$5$` form".into()),
        },
        p if PASSWORDLESS.contains(&p) => Verification::Differs,
        p => Verification::Unknown(format!(
            "the account uses the {p} plugin, whose stored form cannot be recomputed here, and aspects never \
             logs in to check (a failed login can lock the account)"
        )),
    }
}

/// MySQL's default `caching_sha2_password_digest_rounds`.
pub const CACHING_SHA2_ROUNDS: u32 = 5000;
/// Salt length of `caching_sha2_password` and `sha256_password` (MySQL's `CRYPT_SALT_LENGTH`).
pub const SALT_LEN: usize = 20;

/// A fresh salt, drawn as MySQL's own `generate_user_salt` draws one: random bytes cut to 7
/// bits, with NUL and `$` (which would end the salt) moved up by one.
pub fn fresh_salt() -> [u8; SALT_LEN] {
    let mut salt: [u8; SALT_LEN] = rand::random();
    for b in &mut salt {
        *b &= 0x7f;
        if *b == 0 || *b == b'$' {
            *b += 1;
        }
    }
    salt
}

/// MySQL's `caching_sha2_password` stored form for `password`:
/// `$A$<rounds/1000, 3 hex digits>$<20-byte salt><43 chars of SHA-256 crypt>`. Every salt byte
/// is below 0x80, so the result is ASCII (not necessarily printable).
pub fn caching_sha2_stored(password: &str, salt: &[u8; SALT_LEN], rounds: u32) -> String {
    let hash = sha256_crypt(password.as_bytes(), salt, rounds);
    let salt: String = salt.iter().map(|&b| char::from(b)).collect();
    format!("$A${:03X}${salt}{}", rounds / 1000, crypt_b64(&hash))
}

/// `stored` recomputed from `password` with its own salt and rounds (the rounds are hex since
/// MySQL 8.0.24 made them configurable; 5000 is `005` either way). None if `stored` is not
/// in the `$A$` form.
pub fn caching_sha2_hash(password: &str, stored: &str) -> Option<String> {
    let rest = stored.strip_prefix("$A$")?;
    let (rounds, rest) = (rest.get(..3)?, rest.get(3..)?);
    let rounds = u32::from_str_radix(rounds, 16).ok()?;
    let salt: &[u8; SALT_LEN] = rest.strip_prefix('$')?.as_bytes().get(..SALT_LEN)?.try_into().ok()?;
    (rounds > 0).then(|| caching_sha2_stored(password, salt, rounds * 1000))
}

/// MySQL's `sha256_password` stored form, `$5$<salt, up to 20 bytes>$<43 chars>` (SHA-256 crypt
/// with the default 5000 rounds), recomputed from `password` with the salt of `stored`.
pub fn sha256_password_hash(password: &str, stored: &str) -> Option<String> {
    let (salt, _) = stored.strip_prefix("$5$")?.split_once('$')?;
    if salt.len() > SALT_LEN || salt.starts_with("rounds=") {
        return None;
    }
    let hash = sha256_crypt(password.as_bytes(), salt.as_bytes(), CACHING_SHA2_ROUNDS);
    Some(format!("$5${salt}${}", crypt_b64(&hash)))
}

/// SHA-256 crypt (Drepper's algorithm, as glibc and MySQL implement it) without the 16-byte salt
/// limit of the standard form: MySQL uses 20-byte salts, which crates implementing the standard
/// form truncate.
fn sha256_crypt(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let b = Sha256::new().chain_update(password).chain_update(salt).chain_update(password).finalize();
    let mut a = Sha256::new().chain_update(password).chain_update(salt);
    let mut n = password.len();
    while n > 32 {
        a.update(b);
        n -= 32;
    }
    a.update(&b[..n]);
    let mut n = password.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(b);
        } else {
            a.update(password);
        }
        n >>= 1;
    }
    let mut c = a.finalize();
    let repeat = |digest: &[u8], len: usize| -> Vec<u8> { digest.iter().cycle().take(len).copied().collect() };
    let mut dp = Sha256::new();
    password.iter().for_each(|_| dp.update(password));
    let p = repeat(&dp.finalize(), password.len());
    let mut ds = Sha256::new();
    (0..16 + usize::from(c[0])).for_each(|_| ds.update(salt));
    let s = repeat(&ds.finalize(), salt.len());
    for i in 0..rounds {
        let mut h = Sha256::new();
        if i % 2 == 1 {
            h.update(&p)
        } else {
            h.update(c)
        }
        if i % 3 != 0 {
            h.update(&s);
        }
        if i % 7 != 0 {
            h.update(&p);
        }
        if i % 2 == 1 {
            h.update(c)
        } else {
            h.update(&p)
        }
        c = h.finalize();
    }
    c.into()
}

/// The crypt base64 of a SHA-256 crypt digest: its fixed byte order, 6 bits at a time from the
/// low end, in the `./0-9A-Za-z` alphabet.
fn crypt_b64(hash: &[u8; 32]) -> String {
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const ORDER: [(usize, usize, usize); 10] = [
        (0, 10, 20),
        (21, 1, 11),
        (12, 22, 2),
        (3, 13, 23),
        (24, 4, 14),
        (15, 25, 5),
        (6, 16, 26),
        (27, 7, 17),
        (18, 28, 8),
        (9, 19, 29),
    ];
    let mut out = String::with_capacity(43);
    let mut put = |w: u32, n: usize| {
        (0..n).for_each(|k| out.push(char::from(ALPHABET[((w >> (6 * k)) & 0x3f) as usize])));
    };
    for (x, y, z) in ORDER {
        put(u32::from(hash[x]) << 16 | u32::from(hash[y]) << 8 | u32::from(hash[z]), 4);
    }
    put(u32::from(hash[31]) << 8 | u32::from(hash[30]), 3);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_known_vector() {
        assert_eq!(native_hash("password"), "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
        assert_eq!(native_hash(""), "");
    }

    #[test]
    fn secret_forms_cover_escaped_and_hashed() {
        let forms = secret_forms(r"a'b\c");
        assert_eq!(forms[0], r"a'b\c");
        assert_eq!(forms[1], r"a''b\\c");
        assert!(forms[3].starts_with('*') && forms[2] == forms[3].to_lowercase());
    }

    #[test]
    fn verification_by_plugin() {
        let native = native_hash("pw");
        assert_eq!(verify("", &native, "pw"), Verification::Matches);
        assert_eq!(verify("MYSQL_NATIVE_PASSWORD", &native, "other"), Verification::Differs);
        assert_eq!(verify("ed25519", &ed25519_hash("pw"), "pw"), Verification::Matches);
        assert_eq!(verify("ed25519", &ed25519_hash("pw"), "pW"), Verification::Differs);
        assert_eq!(verify("unix_socket", "", "pw"), Verification::Differs);
        let Verification::Unknown(why) = verify("pam", "", "pw") else { panic!("pam cannot be recomputed") };
        assert!(why.contains("pam") && why.contains("never logs in"), "{why}");
        assert!(matches!(verify("caching_sha2_password", "garbage", "pw"), Verification::Unknown(_)));
    }

    #[test]
    fn sha256_crypt_matches_the_published_vectors() {
        // Drepper's SHA-crypt specification (https://www.akkadia.org/drepper/SHA-crypt.txt),
        // SHA-256 test vectors 1 and 4 (5000 and 77777 rounds).
        assert_eq!(
            crypt_b64(&sha256_crypt(b"Hello world!", b"saltstring", 5000)),
            "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
        );
        assert_eq!(
            crypt_b64(&sha256_crypt(b"we have a short salt string but not a short password", b"short", 77777)),
            "JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"
        );
    }

    #[test]
    fn caching_sha2_recomputes_with_a_20_byte_salt() {
        // hashcat's example hash for mode 7401, "MySQL $A$ (sha256crypt)"
        // (https://hashcat.net/wiki/doku.php?id=example_hashes, also `hashcat --example-hashes`),
        // password "hashcat", salt and hash hex-decoded from its `$mysql$A$005*SALT*HASH` form.
        let salt = hex::decode("F9CC98CE08892924F50A213B6BC571A2C11778C5").unwrap();
        let hash =
            hex::decode("625479393559393965414D45316477456B484F41316E64484742577A2E3162785353526B7554584647562F")
                .unwrap();
        assert_eq!(crypt_b64(&sha256_crypt(b"hashcat", &salt, 5000)).as_bytes(), hash.as_slice());
        // Round trip through the stored form.
        let stored = format!(
            "$A$005${}{}",
            "abcdefghij0123456789",
            crypt_b64(&sha256_crypt(b"pw", b"abcdefghij0123456789", 5000))
        );
        assert_eq!(caching_sha2_hash("pw", &stored).as_deref(), Some(stored.as_str()));
        assert_eq!(verify("caching_sha2_password", &stored, "pw"), Verification::Matches);
        assert_eq!(verify("caching_sha2_password", &stored, "px"), Verification::Differs);
    }

    #[test]
    fn caching_sha2_verifies_mysqls_own_example() {
        // MySQL 8.0 Reference Manual, "SHOW CREATE USER Statement"
        // (https://dev.mysql.com/doc/refman/8.0/en/show-create-user.html): the account made with
        // `CREATE USER 'u1'@'localhost' IDENTIFIED BY 'secret'`, printed with
        // print_identified_with_as_hex = ON (its salt holds a newline and control bytes).
        let stored = hex::decode(
            "244124303035240C7745603626313D613C4C10633E0A104B1E14135A544A7871567245614F4872344643546336546F624F6C78\
             61326932752F45622F4F473273597557627139",
        )
        .unwrap();
        let stored = String::from_utf8(stored).unwrap();
        assert_eq!(verify("caching_sha2_password", &stored, "secret"), Verification::Matches);
        assert_eq!(verify("caching_sha2_password", &stored, "Secret"), Verification::Differs);
        // The form MySQL gives its locked system accounts (scripts/mysql_system_users.sql): well
        // formed, matched by no password.
        let never = "$A$005$THISISACOMBINATIONOFINVALIDSALTANDPASSWORDTHATMUSTNEVERBRBEUSED";
        assert_eq!(verify("caching_sha2_password", never, ""), Verification::Differs);
        assert_eq!(verify("caching_sha2_password", never, "THISISACOMBINATIONOF"), Verification::Differs);
    }

    #[test]
    fn caching_sha2_fresh_salts_round_trip() {
        let (a, b) = (fresh_salt(), fresh_salt());
        assert_ne!(a, b, "two salts of 140 random bits collided");
        for salt in [a, b] {
            // What MySQL's generate_user_salt allows: 7-bit, no NUL, no `$`.
            assert!(salt.iter().all(|&c| (1..0x80).contains(&c) && c != b'$'), "{salt:?}");
            let stored = caching_sha2_stored("pw", &salt, CACHING_SHA2_ROUNDS);
            assert!(stored.starts_with("$A$005$") && stored.len() == 7 + SALT_LEN + 43, "{stored:?}");
            assert_eq!(verify("caching_sha2_password", &stored, "pw"), Verification::Matches);
            assert_eq!(verify("caching_sha2_password", &stored, "pw "), Verification::Differs);
        }
        // Rounds are written in hex (MySQL 8.0.24+): 10,000 rounds is `00A`.
        let stored = caching_sha2_stored("pw", &a, 10_000);
        assert!(stored.starts_with("$A$00A$"), "{stored:?}");
        assert_eq!(caching_sha2_hash("pw", &stored).as_deref(), Some(stored.as_str()));
        assert_ne!(stored, caching_sha2_stored("pw", &a, CACHING_SHA2_ROUNDS));
        // An empty password is stored as nothing.
        assert_eq!(verify("caching_sha2_password", "", ""), Verification::Matches);
        assert_eq!(verify("caching_sha2_password", "", "pw"), Verification::Differs);
    }

    #[test]
    fn sha256_password_is_verified_from_its_crypt_form() {
        // Drepper's SHA-crypt test vector 1 (as above), in the `$5$salt$hash` form
        // sha256_password stores.
        let stored = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
        assert_eq!(verify("sha256_password", stored, "Hello world!"), Verification::Matches);
        assert_eq!(verify("sha256_password", stored, "Hello world"), Verification::Differs);
        // A 20-byte salt is used whole (glibc would cut it to 16).
        let salt = "abcdefghij0123456789";
        let long = format!("$5${salt}${}", crypt_b64(&sha256_crypt(b"pw", salt.as_bytes(), 5000)));
        assert_eq!(verify("sha256_password", &long, "pw"), Verification::Matches);
        assert!(matches!(verify("sha256_password", "$5$rounds=9000$s$h", "pw"), Verification::Unknown(_)));
    }
}
