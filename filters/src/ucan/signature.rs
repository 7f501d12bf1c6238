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
//! It pays for 3 and 4 on every call: decoding `R` and testing both points
//! costs a square root and two more field inversions, about a fifth of the
//! whole check. [`IssuerKey`] does the same checks more cheaply:
//! - 4 depends on the key alone, so it is tested when the key is decoded
//!   (and [`super::did::KeyCache`] keeps the result with the key);
//! - once 2 holds, `R`'s bytes are the canonical encoding of a curve point,
//!   so 3 holds exactly when those bytes are not the canonical encoding of
//!   one of the eight points of order dividing 8 (the curve's 8-torsion
//!   subgroup, `curve25519_dalek::constants::EIGHT_TORSION`). Those eight
//!   encodings are computed from that constant once.
//!
//! So [`IssuerKey::verify_strict`] accepts exactly what `verify_strict`
//! accepts; the tests check that on valid, mutated and adversarial
//! signatures (a weak key's forgery and a key holder's small-order `R`, which
//! the plain `verify` accepts).

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
        // The identity and the point of order 2 are among them.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(encodings.contains(&identity));
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

    /// A small-order public key (here the identity) makes `[s]B − [k]A`
    /// independent of the message: anyone can "sign" anything for it. The
    /// plain `verify` accepts such a forgery; strict verification must not.
    #[test]
    fn a_weak_keys_forgery_is_refused() {
        for torsion in *SMALL_ORDER_ENCODINGS {
            let Ok(weak) = VerifyingKey::from_bytes(&torsion) else { continue };
            let s = Scalar::from_bytes_mod_order([9; 32]);
            // With A = O, R = [s]B satisfies the equation for any message.
            let r = (B * s).compress().to_bytes();
            let forged = signature(r, s);
            if torsion == EIGHT_TORSION[0].compress().to_bytes() {
                assert!(weak.verify(b"anything", &forged).is_ok(), "the premise: plain verify accepts the forgery");
            }
            assert_eq!(both(&weak, b"anything", &forged), (false, false));
        }
    }

    /// The key holder can sign with `R` = the identity (`s = k·a`): the plain
    /// `verify` accepts it, strict verification refuses a small-order `R`.
    #[test]
    fn a_small_order_r_is_refused_even_from_the_key_holder() {
        let sk = SigningKey::from_bytes(&[3; 32]);
        let vk = sk.verifying_key();
        assert_eq!((B * secret_scalar(&sk)).compress().to_bytes(), vk.to_bytes(), "the secret scalar is A's");
        let msg = b"header.payload";
        for torsion in *SMALL_ORDER_ENCODINGS {
            let s = challenge(&torsion, vk.as_bytes(), msg) * secret_scalar(&sk);
            let sig = signature(torsion, s);
            if torsion == EIGHT_TORSION[0].compress().to_bytes() {
                assert!(vk.verify(msg, &sig).is_ok(), "the premise: plain verify accepts R = identity");
            }
            assert_eq!(both(&vk, msg, &sig), (false, false));
        }
    }

    proptest! {
        /// Random keys, messages and signatures with random bytes changed:
        /// the two verifications always agree.
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
