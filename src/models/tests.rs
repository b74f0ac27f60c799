//! Whole-network checks against the paper's layer table and the reference implementations'
//! parameter counts (ARCHITECTURES.md, timm's `results-imagenet.csv`).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;

fn config(arch: Arch) -> ModelConfig {
    ModelConfig::new(arch)
}

#[test]
fn parameters_and_macs_match_the_reference_networks() {
    // (arch, aux, params, MACs at 299 in GMACs)
    let expected = [
        (Arch::InceptionV3, false, 23_834_568, 5.713),
        (Arch::InceptionV3, true, 27_161_264, f64::NAN),
        (Arch::InceptionV4, false, 42_679_816, 12.254),
        (Arch::InceptionResnetV2, false, 55_843_464, 13.156),
        (Arch::InceptionResnetV1, false, 22_756_328, 6.206),
    ];
    for (arch, aux, params, gmacs) in expected {
        let mut cfg = config(arch);
        cfg.aux_head = aux;
        let s = summarize(&cfg, 299).unwrap();
        assert_eq!(s.params, params, "{arch} aux={aux}");
        if !gmacs.is_nan() {
            let ours = s.macs as f64 / 1e9;
            assert!(
                (ours / gmacs - 1.0).abs() < 0.01,
                "{arch}: {ours} GMACs, reference {gmacs}"
            );
        }
    }
}

/// The feature-map sizes of the paper's figures at 299 px: 35x35, 17x17, 8x8 grids and the
/// channel counts of each stage output.
#[test]
fn stage_outputs_follow_the_paper_at_299() {
    let expect = [
        (
            Arch::InceptionV3,
            [
                (192, 35),
                (288, 35),
                (768, 17),
                (768, 17),
                (1280, 8),
                (2048, 8),
            ],
        ),
        (
            Arch::InceptionV4,
            [
                (384, 35),
                (384, 35),
                (1024, 17),
                (1024, 17),
                (1536, 8),
                (1536, 8),
            ],
        ),
        (
            Arch::InceptionResnetV1,
            [
                (256, 35),
                (256, 35),
                (896, 17),
                (896, 17),
                (1792, 8),
                (1792, 8),
            ],
        ),
        (
            Arch::InceptionResnetV2,
            [
                (320, 35),
                (320, 35),
                (1088, 17),
                (1088, 17),
                (2080, 8),
                (1536, 8),
            ],
        ),
    ];
    for (arch, stages) in expect {
        let s = summarize(&config(arch), 299).unwrap();
        let got: Vec<(usize, usize)> = s.stages[..6]
            .iter()
            .map(|st| (st.output.c, st.output.h))
            .collect();
        assert_eq!(got, stages.to_vec(), "{arch}");
    }
}

#[test]
fn final_grid_is_one_for_75_and_floors_for_other_sizes() {
    for arch in Arch::ALL {
        for (size, grid) in [(75, 1), (107, 2), (139, 3), (299, 8), (224, 5), (160, 3)] {
            let s = summarize(&config(arch), size).unwrap();
            assert_eq!(s.stages[5].output.h, grid, "{arch} at {size}");
        }
        let err = summarize(&config(arch), 74).unwrap_err().to_string();
        assert!(err.contains("too small"), "{arch}: {err}");
    }
}

#[test]
fn width_multiplier_scales_every_filter_count() {
    let mut cfg = config(Arch::InceptionV4);
    cfg.width = 0.125;
    let s = summarize(&cfg, 299).unwrap();
    // 384 = 4 × 96 → 4 × 12; 1536 = 6 × 256 → 6 × 32.
    assert_eq!(s.stages[1].output.c, 48);
    assert_eq!(s.stages[5].output.c, 192);
    let full = summarize(&config(Arch::InceptionV4), 299).unwrap();
    let ratio = s.macs as f64 / full.macs as f64;
    assert!(
        (0.01..0.025).contains(&ratio),
        "width 1/8 should cost about 1/64 of the MACs, got {ratio}"
    );
}

#[test]
fn blocks_and_classes_knobs_change_the_network() {
    let mut cfg = config(Arch::InceptionResnetV2);
    cfg.width = 0.125;
    cfg.num_classes = 10;
    let base = summarize(&cfg, 107).unwrap();
    cfg.blocks = Some([1, 1, 1]);
    let small = summarize(&cfg, 107).unwrap();
    assert!(small.params < base.params);
    assert_eq!(small.stages.last().unwrap().output.c, 10);
}

/// The traced parameter count equals the number of trainable elements actually created
/// (running statistics excluded), so the counter cannot drift from the network.
#[test]
fn traced_parameters_equal_created_variables() {
    for arch in Arch::ALL {
        let vm = VarMap::new();
        let mut cfg = config(arch);
        cfg.width = 0.25;
        cfg.aux_head = true;
        let net =
            Network::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let created: usize = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| !name.ends_with("running_mean") && !name.ends_with("running_var"))
            .map(|(_, v)| v.elem_count())
            .sum();
        assert_eq!(net.summary(299).unwrap().params, created as u64, "{arch}");
    }
}

fn tiny(arch: Arch) -> ModelConfig {
    let mut cfg = config(arch);
    cfg.width = 0.125;
    cfg.num_classes = 5;
    cfg.image_size = 75;
    cfg.aux_head = true;
    cfg
}

/// The [`tiny`] network in f32 with fresh variables, and a batch of two 75 px images for it.
fn tiny_f32(arch: Arch) -> (VarMap, Network, Tensor) {
    let vm = VarMap::new();
    let net = Network::new(
        &tiny(arch),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let x = Tensor::randn(0f32, 1., (2, 3, 75, 75), &Device::Cpu).unwrap();
    (vm, net, x)
}

#[test]
fn forward_shapes_at_75_107_and_299() {
    for arch in Arch::ALL {
        for size in [75, 107, 299] {
            let mut cfg = tiny(arch);
            cfg.image_size = size;
            let vm = VarMap::new();
            let net =
                Network::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
            let x = Tensor::randn(0f32, 1., (1, 3, size, size), &Device::Cpu).unwrap();
            let out = net.forward_t(&x, true).unwrap();
            assert_eq!(out.logits.dims(), &[1, 5], "{arch} {size}");
            assert_eq!(out.aux_logits.unwrap().dims(), &[1, 5], "{arch} {size}");
            assert!(net.forward_t(&x, false).unwrap().aux_logits.is_none());
        }
    }
}

/// Forward and backward of every network at width 0.125, 75 px, batch 2, in training mode:
/// every trainable variable receives a finite gradient.
#[test]
fn every_network_trains_forward_and_backward() {
    for arch in Arch::ALL {
        let (vm, net, x) = tiny_f32(arch);
        let out = net.forward_t(&x, true).unwrap();
        let loss = (out.logits.sqr().unwrap().mean_all().unwrap()
            + out.aux_logits.unwrap().sqr().unwrap().mean_all().unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let vars = vm.data().lock().unwrap();
        let mut missing = Vec::new();
        for (name, var) in vars.iter() {
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                continue;
            }
            match grads.get(var.as_tensor()) {
                Some(g) => {
                    let finite = g
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        .is_finite();
                    assert!(finite, "{arch}: gradient of {name} is not finite");
                }
                None => missing.push(name.clone()),
            }
        }
        assert!(missing.is_empty(), "{arch}: no gradient for {missing:?}");
    }
}

/// An inference pass gives exactly the eval-mode forward pass's logits (the blocks'
/// concatenations copied outside candle's graph instead of through it), for every network.
#[test]
fn inference_passes_equal_eval_mode_passes() {
    for arch in Arch::ALL {
        let (_vm, net, x) = tiny_f32(arch);
        let eval = net.forward_t(&x, false).unwrap().logits;
        let inferred = net.infer(&x).unwrap().logits;
        assert_eq!(
            eval.to_vec2::<f32>().unwrap(),
            inferred.to_vec2::<f32>().unwrap(),
            "{arch}"
        );
    }
}

/// Inference passes keep the transforms of the weights their Winograd convolutions run on
/// (Inception-v4 at 299 px, width 0.25, batch 2: 3×3s and, in inference, 1×7s), use them while
/// the weights are the same, make them again when the weights change in place between two
/// passes, and drop them at the next pass of another kind.
#[test]
fn inference_keeps_weight_transforms_only_while_the_weights_hold() {
    let mut cfg = tiny(Arch::InceptionV4);
    cfg.width = 0.25;
    cfg.image_size = 299;
    let vm = VarMap::new();
    let net = Network::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 3, 299, 299), &Device::Cpu).unwrap();
    let logits = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let close = |a: &[f32], b: &[f32], what: &str| {
        let range = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(range > 1e-2, "{what}: degenerate logits (up to {range})");
        assert!(
            diff <= 1e-4 * range,
            "{what}: {diff} (logits up to {range})"
        );
    };
    let first = logits(net.infer(&x).unwrap().logits);
    let kept = net.kept_transforms();
    if !fastops::conv::keeps_weight_transforms() {
        eprintln!("skipped the kept transforms: this CPU runs Winograd without packed products");
        return;
    }
    assert!(kept > 0, "nothing kept");
    assert_eq!(
        logits(net.infer(&x).unwrap().logits),
        first,
        "the kept transforms' pass"
    );
    assert_eq!(net.kept_transforms(), kept);
    close(
        &first,
        &logits(net.forward_t(&x, false).unwrap().logits),
        "eval mode",
    );
    assert_eq!(net.kept_transforms(), 0, "an eval-mode pass drops them");
    net.infer(&x).unwrap();
    // Every convolution's weights with random signs, in place (same storage, other values, the
    // same scale): the next pass follows them.
    for var in vm.all_vars() {
        if var.rank() == 4 {
            let noise = var.as_tensor().randn_like(0.0, 1.0).unwrap();
            let signs = ((noise.ge(0.0).unwrap().to_dtype(DType::F32).unwrap() * 2.0).unwrap()
                - 1.0)
                .unwrap();
            var.set(&(var.as_tensor() * signs).unwrap()).unwrap();
        }
    }
    let changed = logits(net.infer(&x).unwrap().logits);
    assert_ne!(changed, first);
    close(
        &changed,
        &logits(net.forward_t(&x, false).unwrap().logits),
        "changed weights",
    );
    net.infer(&x).unwrap();
    net.forward_t(&x, true).unwrap();
    assert_eq!(net.kept_transforms(), 0, "a training pass drops them");
}

#[test]
fn images_smaller_than_75_px_are_refused_with_a_clear_error() {
    let net = Network::new(
        &tiny(Arch::InceptionV4),
        VarBuilder::zeros(DType::F32, &Device::Cpu),
    )
    .unwrap();
    let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let err = net.forward_t(&x, false).err().unwrap().to_string();
    assert!(err.contains("H, W >= 75"), "{err}");
}

/// The loss of `net` on `x` and candle's gradients, with the stages fused into single nodes
/// (their parameters' gradients merged from the collector) or not.
fn loss_and_grads(
    net: &Network,
    x: &Tensor,
    fuse: bool,
) -> (f64, candle_core::backprop::GradStore) {
    let stages = fastops::StageGrads::new();
    let installed = fuse.then(|| stages.install());
    let out = net.forward_t(x, true).unwrap();
    let loss = (out.logits.sqr().unwrap().mean_all().unwrap()
        + out.aux_logits.unwrap().sqr().unwrap().mean_all().unwrap())
    .unwrap();
    let mut grads = loss.backward().unwrap();
    drop(installed);
    assert_eq!(stages.is_empty(), !fuse, "fused stages sent gradients");
    stages.merge_into(&mut grads).unwrap();
    (loss.to_scalar::<f64>().unwrap(), grads)
}

/// Every network at width 0.125, 75 px, batch 2, f64: the stages fused into single nodes of the
/// graph give the loss and every variable's gradient of the unfused graph (up to the order in
/// which a tensor's gradients are summed: 1e-9 of the largest gradient entry of the variable's
/// unit), and the same running statistics.
#[test]
fn fused_stages_give_the_unfused_gradients() {
    for arch in Arch::ALL {
        let vm = VarMap::new();
        let net = Network::new(
            &tiny(arch),
            VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
        )
        .unwrap();
        let x = Tensor::randn(0f64, 1., (2, 3, 75, 75), &Device::Cpu).unwrap();
        let vars: Vec<(String, Tensor)> = {
            let data = vm.data().lock().unwrap();
            let mut v: Vec<_> = data
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let running = |vars: &[(String, Tensor)]| -> Vec<Vec<f64>> {
            vars.iter()
                .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
                .map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
                .collect()
        };
        let before = running(&vars);
        let (loss_plain, plain) = loss_and_grads(&net, &x, false);
        let after_plain = running(&vars);
        // The same running statistics to start from for the fused pass.
        for ((n, t), b) in vars
            .iter()
            .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
            .zip(&before)
        {
            let var = vm.data().lock().unwrap()[n].clone();
            var.set(&Tensor::from_vec(b.clone(), t.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
        let (loss_fused, fused) = loss_and_grads(&net, &x, true);
        assert_eq!(running(&vars), after_plain, "{arch}: running statistics");
        assert!(
            (loss_plain - loss_fused).abs() <= 1e-12 * loss_plain.abs(),
            "{arch}: loss {loss_plain} unfused, {loss_fused} fused"
        );
        // Each gradient is compared at the scale of its unit's (a convolution, its BatchNorm):
        // one that cancels to about zero, as a BatchNorm's bias can when the layers after it
        // normalise again, differs between the summation orders by the rounding of its terms,
        // which are of the unit's size, not of its own.
        let unit = |name: &str| name.rsplitn(3, '.').last().unwrap_or(name).to_string();
        let mut unit_scale = std::collections::HashMap::<String, f64>::new();
        for (name, var) in &vars {
            if let Some(g) = plain.get(var) {
                let s = unit_scale.entry(unit(name)).or_insert(0.0);
                *s = s.max(crate::numeric::max_abs(g).unwrap());
            }
        }
        let mut compared = 0;
        for (name, var) in &vars {
            let (Some(a), b) = (plain.get(var), fused.get(var)) else {
                continue;
            };
            let b = b.unwrap_or_else(|| panic!("{arch}: no fused gradient for {name}"));
            let diff = crate::numeric::max_abs_diff(a, b).unwrap();
            let scale = unit_scale[&unit(name)];
            assert!(
                diff <= 1e-9 * scale.max(1e-12),
                "{arch}: gradient of {name} differs by {diff:e} (largest entry of its unit {scale:e})"
            );
            compared += 1;
        }
        assert!(compared > 50, "{arch}: only {compared} gradients compared");
    }
}
