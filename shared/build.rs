//! Selects the int8 kernels: `cfg(funnel_dsp)` (Cortex-M4/M7 SXTB16/SMLAD inner loops, see
//! `src/kernels.rs`) on `thumbv7em-*` targets unless `FUNNEL_PORTABLE_KERNELS=1`. Stable Rust
//! exposes no `target_feature = "dsp"` cfg for Arm, hence the target name. Both kernels give
//! bit-identical results.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(funnel_dsp)");
    println!("cargo::rerun-if-env-changed=FUNNEL_PORTABLE_KERNELS");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let portable = std::env::var("FUNNEL_PORTABLE_KERNELS").is_ok_and(|v| !v.is_empty() && v != "0");
    if target.starts_with("thumbv7em-") && !portable {
        println!("cargo::rustc-cfg=funnel_dsp");
    }
}
