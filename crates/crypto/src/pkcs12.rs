//! PKCS#12 import and export (the format CAs and administrators exchange keys in).
