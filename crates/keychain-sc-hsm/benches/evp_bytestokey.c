/* Baseline for `cargo xtask bench`: one OpenSSL EVP_BytesToKey(AES-256-CBC, MD5) derivation,
 * the share-file KDF of sc-hsm-tool, timed inside the process.
 *
 * usage: evp_bytestokey COUNT PASSWORD SALT_HEX16
 * prints: SECONDS KEY_HEX IV_HEX
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv) {
    unsigned char salt[8], key[32], iv[16];
    struct timespec start, end;
    int count, i;
    if (argc != 4 || strlen(argv[3]) != 16) {
        fprintf(stderr, "usage: %s COUNT PASSWORD SALT_HEX16\n", argv[0]);
        return 2;
    }
    count = atoi(argv[1]);
    for (i = 0; i < 8; i++) {
        int hi = hexval(argv[3][2 * i]), lo = hexval(argv[3][2 * i + 1]);
        if (hi < 0 || lo < 0) return 2;
        salt[i] = (unsigned char)(hi * 16 + lo);
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (EVP_BytesToKey(EVP_aes_256_cbc(), EVP_md5(), salt, (const unsigned char *)argv[2],
                       (int)strlen(argv[2]), count, key, iv) != 32) {
        fprintf(stderr, "EVP_BytesToKey failed\n");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("%.9f ", (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
    for (i = 0; i < 32; i++) printf("%02x", key[i]);
    printf(" ");
    for (i = 0; i < 16; i++) printf("%02x", iv[i]);
    printf("\n");
    return 0;
}
