//! `ValidManifest::parse` on arbitrary bytes (the body of `POST /manifest` after base64 decoding),
//! plus the update classifier that sees the same bytes.
//!
//! Properties beyond "no panic": an accepted manifest keeps its exact bytes and fingerprint, and
//! every marble's parameters render with the dummy data the dry run used.
#![no_main]

use cairn_manifest::{fingerprint_of, render_parameters, template, update, ValidManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = update::classify(data);
    let Ok(vm) = ValidManifest::parse(data) else {
        return;
    };
    assert_eq!(vm.raw(), data, "raw() must return the parsed bytes unchanged");
    assert_eq!(vm.fingerprint(), fingerprint_of(data));
    let m = vm.manifest();
    let dummy = template::dummy_data(m);
    for name in m.marbles.keys() {
        if let Err(e) = render_parameters(m, name, &dummy) {
            panic!("manifest passed the dry run but marble {name:?} does not render: {e}");
        }
    }
});
