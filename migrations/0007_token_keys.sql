-- Keys that live on a PKCS#11 token. Such an entry (or pending key) keeps only the token
-- object's CKA_ID, as hex, in token_key_id; its key_nonce and key_ciphertext are empty and its
-- kek_id is 'token', so the database holds no private-key bytes for it.
ALTER TABLE keystore_entries ADD COLUMN token_key_id TEXT;
ALTER TABLE pending_keys ADD COLUMN token_key_id TEXT;
