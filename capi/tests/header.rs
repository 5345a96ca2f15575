//! The committed header is what cbindgen generates from the source now: CI fails when someone
//! changes the C API without regenerating it (`capi/scripts/gen-header`).

use std::path::Path;

#[test]
fn committed_header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the C API")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("include/halfscale.h");
    if std::env::var_os("HS_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "capi/include/halfscale.h is stale: run capi/scripts/gen-header and commit the result"
    );
    // The names a C client outside this repository depends on.
    for name in [
        "HsScalerConfig hs_scaler_config_pytorch(void);",
        "double init_scale;",
        "HsStatus hs_scaler_new(const HsScalerConfig *config, HsScaler **out);",
        "void hs_scaler_free(HsScaler *scaler);",
        "HsStatus hs_scaler_update(HsScaler *scaler, HsFound found, HsStepOutcome *outcome);",
        "float hs_scaler_scale(const HsScaler *scaler);",
        "int32_t hs_scaler_growth_tracker(const HsScaler *scaler);",
        "HsStatus hs_unscale_f32(float *grads, size_t n, float inv_scale, HsNonFinite *report);",
        "HsStatus hs_unscale_f16(uint16_t *grads, size_t n, float inv_scale, HsNonFinite *report);",
        "HsStatus hs_unscale_bf16(uint16_t *grads, size_t n, float inv_scale, HsNonFinite *report);",
        "const char *hs_status_message(HsStatus status);",
        "#define HS_OK 0",
        "#define HS_FOUND_NAN 2",
        "#define HS_SKIPPED_NAN 2",
    ] {
        assert!(generated.contains(name), "header lacks `{name}`");
    }
}
