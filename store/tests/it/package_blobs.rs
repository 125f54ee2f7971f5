//! Package blobs in the database come back byte for byte, across chunk boundaries.

use store::PackageBlobs;

use crate::backends;

#[tokio::test(flavor = "multi_thread")]
async fn blobs_come_back_whole() {
    for b in backends().await {
        let blobs = PackageBlobs::new(b.db.clone());
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        // Over two chunks, with a ragged end.
        let bytes: Vec<u8> = (0..2 * 1024 * 1024 + 12_345u32)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&source, &bytes).unwrap();
        assert!(!blobs.exists("abc.sealed").await.unwrap());
        blobs.put_file("abc.sealed", &source).await.unwrap();
        assert!(blobs.exists("abc.sealed").await.unwrap());
        let back = dir.path().join("back");
        assert!(
            blobs.get_file("abc.sealed", &back).await.unwrap(),
            "{}",
            b.name
        );
        assert_eq!(std::fs::read(&back).unwrap(), bytes, "{}", b.name);

        // Stored again (a second deploy of the same package): still one whole blob.
        std::fs::write(&source, b"short").unwrap();
        blobs.put_file("abc.sealed", &source).await.unwrap();
        assert!(blobs.get_file("abc.sealed", &back).await.unwrap());
        assert_eq!(std::fs::read(&back).unwrap(), b"short");

        assert!(!blobs.get_file("missing.sealed", &back).await.unwrap());
    }
}
