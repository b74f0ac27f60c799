//! How many replicas this process belongs to, read from what the launcher set: `mpirun`
//! (Open MPI's `OMPI_COMM_WORLD_*`, MPICH's `PMI_*`), `srun` (`SLURM_PROCID`, `SLURM_NTASKS`,
//! `SLURM_LOCALID`) or torchrun (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`).

use super::collective::DistError;

/// This process's place among the replicas, as its launcher described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchInfo {
    pub rank: usize,
    pub world_size: usize,
    /// The rank among the processes of this node: which GPU to take.
    pub local_rank: usize,
    /// Who set the variables: `mpirun`, `srun`, `torchrun`, or `none`.
    pub launcher: &'static str,
}

impl LaunchInfo {
    /// Reads the launcher's variables through `var`.
    pub fn detect(var: impl Fn(&str) -> Option<String>) -> Result<Self, DistError> {
        let number = |name: &str| -> Result<Option<usize>, DistError> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    DistError::Launch(format!("{name}={v} is not a non-negative integer"))
                }),
            }
        };
        let schemes: [(&'static str, [&str; 3]); 4] = [
            (
                "mpirun",
                [
                    "OMPI_COMM_WORLD_RANK",
                    "OMPI_COMM_WORLD_SIZE",
                    "OMPI_COMM_WORLD_LOCAL_RANK",
                ],
            ),
            ("mpirun", ["PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"]),
            ("srun", ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"]),
            ("torchrun", ["RANK", "WORLD_SIZE", "LOCAL_RANK"]),
        ];
        for (launcher, [rank, size, local]) in schemes {
            if let (Some(rank_value), Some(world_size)) = (number(rank)?, number(size)?) {
                if world_size == 0 || rank_value >= world_size {
                    return Err(DistError::Launch(format!(
                        "{rank}={rank_value} is not below {size}={world_size}"
                    )));
                }
                return Ok(Self {
                    rank: rank_value,
                    world_size,
                    local_rank: number(local)?.unwrap_or(0),
                    launcher,
                });
            }
        }
        Ok(Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            launcher: "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn detect(vars: &[(&str, &str)]) -> Result<LaunchInfo, DistError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LaunchInfo::detect(|name| map.get(name).cloned())
    }

    #[test]
    fn each_launcher_is_read_from_its_own_variables() {
        let none = detect(&[]).unwrap();
        assert_eq!((none.rank, none.world_size, none.launcher), (0, 1, "none"));
        let ompi = detect(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ])
        .unwrap();
        assert_eq!(
            (ompi.rank, ompi.world_size, ompi.local_rank, ompi.launcher),
            (1, 4, 1, "mpirun")
        );
        let slurm = detect(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "3"),
        ])
        .unwrap();
        assert_eq!(
            (
                slurm.rank,
                slurm.world_size,
                slurm.local_rank,
                slurm.launcher
            ),
            (3, 8, 3, "srun")
        );
        let torch = detect(&[("RANK", "0"), ("WORLD_SIZE", "2")]).unwrap();
        assert_eq!((torch.world_size, torch.launcher), (2, "torchrun"));
    }

    #[test]
    fn inconsistent_variables_are_named() {
        let err = detect(&[("SLURM_PROCID", "4"), ("SLURM_NTASKS", "4")]).unwrap_err();
        assert!(err.to_string().contains("SLURM_PROCID=4"), "{err}");
        let err = detect(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")]).unwrap_err();
        assert!(err.to_string().contains("PMI_RANK=x"), "{err}");
    }
}
