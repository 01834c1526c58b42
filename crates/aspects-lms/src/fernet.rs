//! The Fernet tokens django-fernet-fields(-v2) stores in RouterConfiguration's encrypted
//! columns, made and read locally. A `FERNET_KEYS` entry becomes a Fernet key through
//! HKDF-SHA256 (salt `django-fernet-fields-hkdf-salt`, info `django-fernet-fields`, 32 bytes):
//! the first 16 bytes sign (HMAC-SHA256), the last 16 encrypt (AES-128-CBC, PKCS#7).

use aes::Aes128;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

const VERSION: u8 = 0x80;
const HEADER: usize = 1 + 8 + 16;
const TAG: usize = 32;

/// A derived key. Deliberately not `Debug`.
pub struct Key {
    signing: [u8; 16],
    encryption: [u8; 16],
}

impl Key {
    /// The key django-fernet-fields derives from one `FERNET_KEYS` entry.
    pub fn derive(setting: &str) -> Key {
        let mut okm = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(Some(b"django-fernet-fields-hkdf-salt"), setting.as_bytes())
            .expand(b"django-fernet-fields", &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let (signing, encryption) = okm.split_at(16);
        Key { signing: signing.try_into().expect("16 bytes"), encryption: encryption.try_into().expect("16 bytes") }
    }

    fn mac(&self) -> hmac::Hmac<Sha256> {
        hmac::Hmac::<Sha256>::new_from_slice(&self.signing).expect("HMAC takes any key length")
    }

    /// A token for `plain`, as `Fernet.encrypt` makes it (the ASCII bytes stored in the column).
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let iv: [u8; 16] = rand::random();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut token = Vec::with_capacity(HEADER + plain.len() + 16 + TAG);
        token.push(VERSION);
        token.extend_from_slice(&now.to_be_bytes());
        token.extend_from_slice(&iv);
        let cipher = cbc::Encryptor::<Aes128>::new_from_slices(&self.encryption, &iv).expect("key and IV lengths");
        token.extend(cipher.encrypt_padded_vec::<Pkcs7>(plain));
        let tag = self.mac().chain_update(&token).finalize().into_bytes();
        token.extend_from_slice(&tag);
        URL_SAFE.encode(token).into_bytes()
    }

    /// The plaintext of a token made with this key; `None` for another key's token or a damaged
    /// one (the signature is checked before anything is decrypted).
    pub fn decrypt(&self, token: &[u8]) -> Option<Vec<u8>> {
        let raw = URL_SAFE.decode(token.trim_ascii()).ok()?;
        if raw.len() < HEADER + 16 + TAG || raw[0] != VERSION {
            return None;
        }
        let (signed, tag) = raw.split_at(raw.len() - TAG);
        self.mac().chain_update(signed).verify_slice(tag).ok()?;
        let cipher = cbc::Decryptor::<Aes128>::new_from_slices(&self.encryption, &signed[9..HEADER]).ok()?;
        cipher.decrypt_padded_vec::<Pkcs7>(&signed[HEADER..]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_other_keys() {
        let key = Key::derive("one");
        let token = key.encrypt(b"ralph-password");
        assert!(token.starts_with(b"gAAAAA"), "a Fernet token: {}", String::from_utf8_lossy(&token));
        assert_eq!(key.decrypt(&token).as_deref(), Some(&b"ralph-password"[..]));
        assert_eq!(Key::derive("two").decrypt(&token), None);
        let mut damaged = token.clone();
        damaged[20] = if damaged[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.decrypt(&damaged), None);
    }

    #[test]
    fn reads_a_token_python_made() {
        // cryptography's Fernet(urlsafe_b64encode(HKDF(SHA256, 32, b"django-fernet-fields-hkdf-salt",
        // b"django-fernet-fields").derive(b"aspects-lms-schema-fixture-fernet-key"))).encrypt(b'"x"')
        let token =
            b"gAAAAABrDsVM7yjKEA_Rivbk5u06KGXz3FR7XOhIj0I5c2UBH1ivlTFEkOiFg5_aArABfd5GaOyYT0jr-JyOK-GgCMNy3UeYSg==";
        let key = Key::derive("aspects-lms-schema-fixture-fernet-key");
        assert_eq!(key.decrypt(token).as_deref(), Some(&b"\"x\""[..]));
    }
}
