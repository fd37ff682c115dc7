//! The expiry watch: plans renewals backwards from certificate expiry (being written).
