//! Strict Ed25519 verification of token signatures, with the key's half of
//! the work done once per key instead of once per signature.
//!
//! `ed25519_dalek::VerifyingKey::verify_strict` accepts a signature `(R, s)`
//! on a message `M` under key `A` when:
//! 1. `s` is canonical (below the group order);
//! 2. `[s]B − [k]A` compresses to exactly the bytes of `R` (`k` is
//!    SHA-512 of `R ‖ A ‖ M`), which is also what the plain
//!    `VerifyingKey::verify` checks;
//! 3. `R` decodes to a point that is not of small order;
//! 4. `A` is not of small order.
//!
//! It pays for 3 and 4 on every call: decoding `R` (a square root) and
//! multiplying both points by the cofactor, 13 % of the instructions of the
//! whole check (callgrind). [`IssuerKey`] does the same checks more cheaply:
//! - 4 depends on the key alone, so it is tested when the key is decoded
//!   (and [`super::did::KeyCache`] keeps the result with the key);
//! - once 2 holds, `R`'s bytes are the canonical encoding of a curve point,
//!   so 3 holds exactly when those bytes are not the canonical encoding of
//!   one of the eight points of order dividing 8 (the curve's 8-torsion
//!   subgroup, `curve25519_dalek::constants::EIGHT_TORSION`). Those eight
//!   encodings are computed from that constant once.
//!
//! So [`IssuerKey::verify_strict`] accepts exactly what `verify_strict`
//! accepts; the tests check that on valid and mutated signatures and on the
//! signatures the plain `verify` accepts but `verify_strict` refuses: a
//! forgery for each small-order key (canonical or not) and, for each of the
//! eight small-order `R`, a signature made with it by a key holder.

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::sync::LazyLock;

/// The canonical encodings of the eight points of small order.
static SMALL_ORDER_ENCODINGS: LazyLock<[[u8; 32]; 8]> = LazyLock::new(|| EIGHT_TORSION.map(|p| p.compress().to_bytes()));

/// The signature does not verify (strictly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// An Ed25519 public key whose own strict-verification check (not of small
/// order) has been made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerKey {
    key: VerifyingKey,
    weak: bool,
}

impl IssuerKey {
    pub fn new(key: VerifyingKey) -> Self {
        IssuerKey { weak: key.is_weak(), key }
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Accepts exactly the signatures that `VerifyingKey::verify_strict`
    /// accepts (see the module documentation).
    pub fn verify_strict(&self, message: &[u8], signature: &Signature) -> Result<(), BadSignature> {
        if self.weak || SMALL_ORDER_ENCODINGS.contains(signature.r_bytes()) {
            return Err(BadSignature);
        }
        self.key.verify(message, signature).map_err(|_| BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;
    use sha2::{Digest, Sha512};

    fn both(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> (bool, bool) {
        (key.verify_strict(msg, sig).is_ok(), IssuerKey::new(*key).verify_strict(msg, sig).is_ok())
    }

    /// `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
    fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
        let mut h = Sha512::new();
        h.update(r);
        h.update(a);
        h.update(msg);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// The secret scalar `a` of a signing key (`A = [a]B`).
    fn secret_scalar(sk: &SigningKey) -> Scalar {
        let h = Sha512::digest(sk.to_bytes());
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        Scalar::from_bytes_mod_order(a)
    }

    fn signature(r: [u8; 32], s: Scalar) -> Signature {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r);
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(&bytes)
    }

    #[test]
    fn the_small_order_encodings_are_eight_distinct_points_of_order_dividing_8() {
        let encodings = *SMALL_ORDER_ENCODINGS;
        for (i, e) in encodings.iter().enumerate() {
            let p = CompressedEdwardsY(*e).decompress().expect("a curve point");
            assert!(p.is_small_order());
            assert_eq!(p.compress().to_bytes(), *e, "canonical");
            assert!(!encodings[..i].contains(e), "distinct");
        }
        // The identity (y = 1) and the point of order 2 (y = −1) are among them.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order_two = [0xff; 32];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        assert!(encodings.contains(&identity) && encodings.contains(&order_two));
    }

    #[test]
    fn honest_signatures_verify_and_any_change_is_refused_as_verify_strict_does() {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let vk = sk.verifying_key();
        for n in 0..32 {
            let msg = format!("header.payload-{n}");
            let sig = sk.sign(msg.as_bytes());
            assert_eq!(both(&vk, msg.as_bytes(), &sig), (true, true));
            assert_eq!(both(&vk, format!("{msg}x").as_bytes(), &sig), (false, false));
        }
    }

    /// For a public key `A = T` of small order, `[s]B − [k]A = [s]B` whenever
    /// `[k]T` is the identity (one challenge in at most eight): anyone can
    /// "sign" anything without a secret. The plain `verify` accepts such a
    /// forgery for every small-order key, including non-canonical encodings
    /// of the identity; strict verification must refuse them all.
    #[test]
    fn a_forgery_for_any_small_order_key_is_refused() {
        let mut keys: Vec<[u8; 32]> = SMALL_ORDER_ENCODINGS.to_vec();
        let mut identity_signed = [0u8; 32]; // y = 1 with the sign bit set
        identity_signed[0] = 1;
        identity_signed[31] = 0x80;
        let mut identity_unreduced = [0xff; 32]; // y = p + 1
        identity_unreduced[0] = 0xee;
        identity_unreduced[31] = 0x7f;
        keys.extend([identity_signed, identity_unreduced]);
        let msg = b"header.payload";
        for bytes in keys {
            let weak = VerifyingKey::from_bytes(&bytes).expect("a curve point");
            let forged = (0u8..=255)
                .map(|n| {
                    let s = Scalar::from_bytes_mod_order([n; 32]);
                    signature((B * s).compress().to_bytes(), s)
                })
                .find(|sig| weak.verify(msg, sig).is_ok())
                .expect("the premise: some forgery passes the plain check");
            assert_eq!(both(&weak, msg, &forged), (false, false), "key {bytes:02x?}");
        }
    }

    /// A key holder can make the plain check accept a small-order `R`:
    /// - with an ordinary key `A = [a]B`, `R` = the identity and `s = k·a`;
    /// - with a key that has a small-order part, `A = [a]B + T` (`T` of
    ///   order 8; the key itself is not of small order), `s = k·a` gives
    ///   `[s]B − [k]A = −[k]T`, which is `R` for one message in eight, for
    ///   each of the eight small-order `R`.
    ///
    /// Strict verification must refuse all of them.
    #[test]
    fn a_small_order_r_is_refused_even_from_the_key_holder() {
        let sk = SigningKey::from_bytes(&[3; 32]);
        let a = secret_scalar(&sk);
        let vk = sk.verifying_key();
        assert_eq!((B * a).compress().to_bytes(), vk.to_bytes(), "the secret scalar is A's");
        let identity = EIGHT_TORSION[0].compress().to_bytes();
        let msg = b"header.payload";
        let sig = signature(identity, challenge(&identity, vk.as_bytes(), msg) * a);
        assert!(vk.verify(msg, &sig).is_ok(), "the premise: plain verify accepts R = identity");
        assert_eq!(both(&vk, msg, &sig), (false, false));

        let mixed = VerifyingKey::from_bytes(&(B * a + EIGHT_TORSION[1]).compress().to_bytes()).expect("a curve point");
        assert!(!mixed.is_weak(), "a key with a small-order part is not itself of small order");
        for r in *SMALL_ORDER_ENCODINGS {
            let (msg, sig) = (0..1000)
                .map(|n| {
                    let msg = format!("header.payload-{n}");
                    let sig = signature(r, challenge(&r, mixed.as_bytes(), msg.as_bytes()) * a);
                    (msg, sig)
                })
                .find(|(msg, sig)| mixed.verify(msg.as_bytes(), sig).is_ok())
                .expect("the premise: for some message the plain check accepts this R");
            assert_eq!(both(&mixed, msg.as_bytes(), &sig), (false, false), "R {r:02x?}");
        }
    }

    proptest! {
        /// Random keys, messages and signatures with random bytes changed:
        /// the two verifications always agree. (Random changes almost never
        /// make the two disagree even when one is wrong; the adversarial
        /// cases are the two tests above. This guards the common path.)
        #[test]
        fn agrees_with_verify_strict_on_mutated_signatures(
            seed in any::<[u8; 32]>(),
            msg in proptest::collection::vec(any::<u8>(), 0..64),
            flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..3),
        ) {
            let sk = SigningKey::from_bytes(&seed);
            let vk = sk.verifying_key();
            let mut bytes = sk.sign(&msg).to_bytes();
            for (i, x) in flips {
                bytes[i] ^= x;
            }
            let sig = Signature::from_bytes(&bytes);
            let (strict, ours) = both(&vk, &msg, &sig);
            prop_assert_eq!(strict, ours);
        }
    }
}
