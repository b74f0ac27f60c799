//! Named variables in a stable order.

use candle_core::Var;
use candle_nn::VarMap;

/// All variables of `varmap` as `(name, var)` pairs sorted by name.
///
/// The `Var`s share storage with the map, so updating them updates the model. A stable
/// order makes optimizer and EMA state (and the order of reductions) reproducible.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("VarMap mutex poisoned");
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn vars_come_sorted_by_name() {
        let vm = VarMap::new();
        for name in ["b.weight", "a.bias", "c"] {
            vm.get(
                2,
                name,
                candle_nn::Init::Const(0.),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        }
        let names: Vec<String> = sorted_vars(&vm).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a.bias", "b.weight", "c"]);
    }
}
