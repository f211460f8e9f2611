// The front door's two decisions, in nginx's njs (deploy/config/gateway.nginx.conf).
// Both files are read on every request, so a rotated Secret (the kubelet swaps the mounted
// file) and a restarted TorchServe (fresh keys) take effect with no reload and no downtime.
const fs = require('fs');
const crypto = require('crypto');

function digest(text) {
    return crypto.createHash('sha256').update(text).digest();
}

// Compares all 32 bytes whatever differs: the time taken says nothing about the key.
function sameDigest(a, b) {
    let difference = 0;
    for (let i = 0; i < a.length; i++) {
        difference |= a[i] ^ b[i];
    }
    return difference === 0;
}

// "1" when the request's bearer token is one of the client keys (one per line in the Secret:
// two lines while a rotation is under way). Digests give every comparison the same length,
// and every key is compared, so neither a key's length nor its position leaks.
function clientKeyValid(r) {
    const offered = r.headersIn.Authorization || '';
    const token = offered.startsWith('Bearer ') ? offered.slice(7).trim() : '';
    if (!token) {
        return '0';
    }
    let keys;
    try {
        keys = fs.readFileSync(r.variables.client_keys_file, 'utf8').split('\n');
    } catch (failure) {
        r.error('the client keys file cannot be read: ' + failure.code);
        return '0';
    }
    const offeredDigest = digest(token);
    let valid = false;
    for (let i = 0; i < keys.length; i++) {
        const key = keys[i].trim();
        if (key.length > 0) {
            valid = sameDigest(offeredDigest, digest(key)) || valid;
        }
    }
    return valid ? '1' : '0';
}

// "Bearer <this pod's TorchServe inference key>", or "" until TorchServe has written its keys.
function torchserveAuthorization(r) {
    try {
        const keys = JSON.parse(fs.readFileSync(r.variables.torchserve_key_file, 'utf8'));
        return 'Bearer ' + keys.inference.key;
    } catch (failure) {
        return '';
    }
}

export default {clientKeyValid, torchserveAuthorization};
