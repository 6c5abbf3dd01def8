"""Runs moto's server (the KMS emulator of the `aws` test cell) with three corrections.

`cargo xtask services start` runs this with the Python of the venv that `cargo xtask setup`
made under target/keychain-services/venv. It binds 127.0.0.1 on an ephemeral port, writes
the port to the file given by --port-file once the server accepts connections, and serves
until it is killed (`cargo xtask services stop`).

The keychain AWS backend sends exactly what it would send to AWS KMS; where moto 5.x
answers differently from AWS, this harness corrects moto, never the library (DESIGN.md §6):

1. Sign/Verify with MessageType=DIGEST: moto ignores MessageType and hashes the digest again,
   so a signature over a digest made by moto does not verify against that digest (open
   upstream). Here a DIGEST message is signed as a prehashed value, after the length check
   AWS makes. `tests/aws_moto_digest.rs` fails without this correction.
2. RSASSA_PSS_*: moto uses the largest salt; AWS KMS uses a salt as long as the hash
   (e.g. 256 bits for RSASSA_PSS_SHA_256), which strict verifiers require.
3. Decrypt with EncryptionAlgorithm RSAES_OAEP_SHA_1/SHA_256: moto has no asymmetric
   decryption (it parses every ciphertext as its own symmetric blob). Here an RSA key with
   KeyUsage ENCRYPT_DECRYPT decrypts OAEP (MGF1 with the same hash, empty label), and a
   ciphertext that does not decrypt is InvalidCiphertextException, as on AWS.

Nothing else is changed. Test values only: moto keeps keys in memory, unencrypted.
"""

import argparse
import base64
import json
import os
import signal
import sys
import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from moto.kms import responses as kms_responses
from moto.kms import utils as kms_utils
from moto.kms.exceptions import (
    InvalidCiphertextException,
    InvalidKeyUsageException,
    ValidationException,
)
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

# Whether the request this thread serves is a Sign/Verify with MessageType=DIGEST.
_request = threading.local()

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def _hash_of(signing_algorithm):
    return _HASHES[signing_algorithm[-3:]]()


def _digest_or_hash(message, hash_algorithm):
    """The hash argument for cryptography: Prehashed for a DIGEST request (after AWS's length
    check), the hash itself for a RAW one."""
    if not getattr(_request, "digest", False):
        return hash_algorithm
    if len(message) != hash_algorithm.digest_size:
        raise ValidationException(
            f"Digest is invalid length for algorithm {hash_algorithm.name}."
        )
    return Prehashed(hash_algorithm)


def _rsa_padding(signing_algorithm, hash_algorithm):
    if "_PSS_" in signing_algorithm:
        # AWS KMS: "a salt length equal to the length of the hash" (moto: MAX_LENGTH).
        return padding.PSS(
            mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size
        )
    return padding.PKCS1v15()


def _rsa_sign(self, message, signing_algorithm):
    kms_utils.validate_signing_algorithm(
        signing_algorithm, kms_utils.SigningAlgorithm.rsa_signing_algorithms()
    )
    h = _hash_of(signing_algorithm)
    return self.private_key.sign(
        message, _rsa_padding(signing_algorithm, h), _digest_or_hash(message, h)
    )


def _rsa_verify(self, message, signature, signing_algorithm):
    kms_utils.validate_signing_algorithm(
        signing_algorithm, kms_utils.SigningAlgorithm.rsa_signing_algorithms()
    )
    h = _hash_of(signing_algorithm)
    try:
        self.private_key.public_key().verify(
            signature,
            message,
            _rsa_padding(signing_algorithm, h),
            _digest_or_hash(message, h),
        )
        return True
    except Exception:  # InvalidSignature, or a malformed signature
        return False


def _ec_sign(self, message, signing_algorithm):
    kms_utils.validate_signing_algorithm(
        signing_algorithm, self.valid_signing_algorithms
    )
    h = _hash_of(signing_algorithm)
    return self.private_key.sign(message, ec.ECDSA(_digest_or_hash(message, h)))


def _ec_verify(self, message, signature, signing_algorithm):
    kms_utils.validate_signing_algorithm(
        signing_algorithm, self.valid_signing_algorithms
    )
    h = _hash_of(signing_algorithm)
    try:
        self.private_key.public_key().verify(
            signature, message, ec.ECDSA(_digest_or_hash(message, h))
        )
        return True
    except Exception:
        return False


def _with_message_type(original):
    def handler(self):
        _request.digest = self._get_param("MessageType") == "DIGEST"
        try:
            return original(self)
        finally:
            _request.digest = False

    return handler


_OAEP = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256}


def _with_oaep(original):
    def handler(self):
        algorithm = self._get_param("EncryptionAlgorithm")
        if algorithm not in _OAEP:
            return original(self)
        key_id = self._get_param("KeyId")
        self._validate_key_id(key_id)
        key = self.kms_backend.describe_key(key_id)
        if key.key_usage != "ENCRYPT_DECRYPT" or not key.key_spec.startswith("RSA_"):
            raise InvalidKeyUsageException()
        h = _OAEP[algorithm]()
        try:
            plaintext = key.private_key.private_key.decrypt(
                self._get_param("CiphertextBlob"),
                padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None),
            )
        except Exception:
            raise InvalidCiphertextException()
        return json.dumps(
            {
                "Plaintext": base64.b64encode(plaintext).decode("utf-8"),
                "KeyId": key.arn,
                "EncryptionAlgorithm": algorithm,
            }
        )

    return handler


def patch_moto():
    kms_utils.RSAPrivateKey.sign = _rsa_sign
    kms_utils.RSAPrivateKey.verify = _rsa_verify
    kms_utils.ECDSAPrivateKey.sign = _ec_sign
    kms_utils.ECDSAPrivateKey.verify = _ec_verify
    response = kms_responses.KmsResponse
    response.sign = _with_message_type(response.sign)
    response.verify = _with_message_type(response.verify)
    response.decrypt = _with_oaep(response.decrypt)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    parser.add_argument("--port-file", required=True)
    parser.add_argument(
        "--no-corrections",
        action="store_true",
        help="plain moto, to show what the corrections are for",
    )
    args = parser.parse_args()
    if not args.no_corrections:
        patch_moto()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, args.port_file)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
