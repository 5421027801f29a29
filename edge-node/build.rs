//! Embeds the pinned hls.js (and its license) that the room page loads from the edge itself:
//! `web/node_modules/hls.js`, fetched from the npm registry with its integrity checked by
//! `scripts/install-web.sh` (every make target that builds runs it).

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/node_modules/hls.js");
    for file in ["dist/hls.min.js", "LICENSE"] {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        if !path.is_file() {
            panic!(
                "{} is missing: run scripts/install-web.sh (make does) to fetch the hls.js \
                 pinned in web/package-lock.json from the npm registry",
                path.display()
            );
        }
    }
    println!("cargo:rustc-env=DAIHUO_HLS_JS={}", dir.display());
}
