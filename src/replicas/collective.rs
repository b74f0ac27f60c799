//! The one interface replicas are reduced through, and the single process's identity.

use std::sync::Arc;

use candle_core::Tensor;

/// What can go wrong between replicas.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The processes were started as several replicas, but this build cannot join them.
    #[error("{0}")]
    Launch(String),
    /// A collective operation failed.
    #[error("{operation}: {message}")]
    Operation {
        operation: &'static str,
        message: String,
    },
}

impl DistError {
    pub(crate) fn op(operation: &'static str, e: impl std::fmt::Display) -> Self {
        DistError::Operation {
            operation,
            message: e.to_string(),
        }
    }
}

/// The replicas of one training run: one process each, the same code on each.
pub trait Collective: Send + Sync {
    /// This process's index, 0 for the one that writes results.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn world_size(&self) -> usize;
    /// The element-wise sum over the replicas of each f32 or f64 buffer, in place (all
    /// replicas pass buffers of the same lengths, in the same order).
    fn all_reduce_sum_f32(&self, buffer: &mut [f32]) -> Result<(), DistError>;
    /// As [`Collective::all_reduce_sum_f32`], for f64 buffers.
    fn all_reduce_sum_f64(&self, buffer: &mut [f64]) -> Result<(), DistError>;
    /// Replaces `bytes` on every replica by rank 0's (its length included).
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), DistError>;
    /// Returns when every replica has called it.
    fn barrier(&self) -> Result<(), DistError>;
    /// Whether this engine sums tensors where they live on `device` (NCCL on GPUs) through
    /// [`Collective::all_reduce_sum_device`], instead of through host buffers.
    fn reduces_on(&self, _device: &candle_core::Device) -> bool {
        false
    }
    /// The element-wise sum over the replicas of a 1-D f32 or f64 tensor on a device this
    /// engine [reduces on](Collective::reduces_on).
    fn all_reduce_sum_device(&self, flat: &Tensor) -> Result<Tensor, DistError> {
        Err(DistError::op(
            "all-reduce",
            format!(
                "this engine does not reduce tensors on {:?}",
                flat.device().location()
            ),
        ))
    }
}

/// The shared handle the trainer and runner hold.
pub type Replicas = Arc<dyn Collective>;

impl std::fmt::Debug for dyn Collective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replica {} of {}", self.rank(), self.world_size())
    }
}

/// The replicas of a process that trains alone.
pub fn single() -> Replicas {
    Arc::new(Single)
}

/// One process: every operation is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _: &mut [f32]) -> Result<(), DistError> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<(), DistError> {
        Ok(())
    }
    fn broadcast(&self, _: &mut Vec<u8>) -> Result<(), DistError> {
        Ok(())
    }
    fn barrier(&self) -> Result<(), DistError> {
        Ok(())
    }
}

/// Whether `flag` is set on any replica (every replica gets the same answer).
pub fn any_replica(replicas: &dyn Collective, flag: bool) -> Result<bool, DistError> {
    if replicas.world_size() == 1 {
        return Ok(flag);
    }
    let mut count = [f64::from(u8::from(flag))];
    replicas.all_reduce_sum_f64(&mut count)?;
    Ok(count[0] > 0.0)
}

/// Largest fused buffer of one all-reduce, in elements (64 MiB of f32): bounded memory,
/// few calls.
const BUCKET_ELEMENTS: usize = 16 << 20;

/// Replaces each tensor by its mean over the replicas. Tensors are flattened into fused
/// host buffers of at most [`BUCKET_ELEMENTS`] (one per float type), reduced, and split
/// back on their device. The identity for one replica.
pub fn all_reduce_mean(
    replicas: &dyn Collective,
    tensors: &[Tensor],
) -> Result<Vec<Tensor>, DistError> {
    let world = replicas.world_size();
    if world == 1 {
        return Ok(tensors.to_vec());
    }
    let scale = 1.0 / world as f64;
    let mut out = Vec::with_capacity(tensors.len());
    let mut start = 0;
    while start < tensors.len() {
        let dtype = tensors[start].dtype();
        let mut end = start;
        let mut elements = 0;
        while end < tensors.len()
            && tensors[end].dtype() == dtype
            && (end == start || elements + tensors[end].elem_count() <= BUCKET_ELEMENTS)
        {
            elements += tensors[end].elem_count();
            end += 1;
        }
        out.extend(reduce_bucket(replicas, &tensors[start..end], scale)?);
        start = end;
    }
    Ok(out)
}

fn reduce_bucket(
    replicas: &dyn Collective,
    bucket: &[Tensor],
    scale: f64,
) -> Result<Vec<Tensor>, DistError> {
    let fail = |e: candle_core::Error| DistError::op("all-reduce", e);
    let flat = |t: &Tensor| t.flatten_all().map_err(fail);
    if replicas.reduces_on(bucket[0].device()) {
        let flats = bucket.iter().map(flat).collect::<Result<Vec<_>, _>>()?;
        let fused = Tensor::cat(&flats, 0).map_err(fail)?;
        let mean = replicas
            .all_reduce_sum_device(&fused)?
            .affine(scale, 0.0)
            .map_err(fail)?;
        return split(bucket, |range, t| {
            mean.narrow(0, range.start, range.len())?.reshape(t.shape())
        });
    }
    match bucket[0].dtype() {
        candle_core::DType::F64 => {
            let mut buffer = Vec::new();
            for t in bucket {
                buffer.extend(flat(t)?.to_vec1::<f64>().map_err(fail)?);
            }
            replicas.all_reduce_sum_f64(&mut buffer)?;
            buffer.iter_mut().for_each(|v| *v *= scale);
            split(bucket, |range, t| {
                Tensor::from_slice(&buffer[range], t.shape(), t.device())
            })
        }
        _ => {
            let mut buffer = Vec::new();
            for t in bucket {
                let t = t.to_dtype(candle_core::DType::F32).map_err(fail)?;
                buffer.extend(flat(&t)?.to_vec1::<f32>().map_err(fail)?);
            }
            replicas.all_reduce_sum_f32(&mut buffer)?;
            let scale = scale as f32;
            buffer.iter_mut().for_each(|v| *v *= scale);
            split(bucket, |range, t| {
                Tensor::from_slice(&buffer[range], t.shape(), t.device())?.to_dtype(t.dtype())
            })
        }
    }
}

/// Cuts a fused buffer back into tensors shaped like `bucket`.
fn split(
    bucket: &[Tensor],
    make: impl Fn(std::ops::Range<usize>, &Tensor) -> candle_core::Result<Tensor>,
) -> Result<Vec<Tensor>, DistError> {
    let mut offset = 0;
    bucket
        .iter()
        .map(|t| {
            let n = t.elem_count();
            let piece = make(offset..offset + n, t).map_err(|e| DistError::op("all-reduce", e));
            offset += n;
            piece
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::sync::Mutex;

    /// Two replicas in one process, for the bookkeeping of fused buffers: the "other"
    /// replica contributes fixed buffers recorded in call order.
    struct Pretend {
        others: Mutex<Vec<Vec<f32>>>,
        calls: Mutex<usize>,
    }

    impl Collective for Pretend {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            2
        }
        fn all_reduce_sum_f32(&self, buffer: &mut [f32]) -> Result<(), DistError> {
            *self.calls.lock().unwrap() += 1;
            let other = self.others.lock().unwrap().remove(0);
            assert_eq!(other.len(), buffer.len());
            buffer.iter_mut().zip(other).for_each(|(b, o)| *b += o);
            Ok(())
        }
        fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<(), DistError> {
            unreachable!("f32 only here")
        }
        fn broadcast(&self, _: &mut Vec<u8>) -> Result<(), DistError> {
            Ok(())
        }
        fn barrier(&self) -> Result<(), DistError> {
            Ok(())
        }
    }

    /// Two replicas whose engine reduces tensors in place of host buffers (as NCCL does on
    /// GPUs): the other replica holds twice this one's values.
    struct PretendDevice {
        calls: Mutex<usize>,
    }

    impl Collective for PretendDevice {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            2
        }
        fn all_reduce_sum_f32(&self, _: &mut [f32]) -> Result<(), DistError> {
            unreachable!("tensors go through all_reduce_sum_device")
        }
        fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<(), DistError> {
            unreachable!("tensors go through all_reduce_sum_device")
        }
        fn broadcast(&self, _: &mut Vec<u8>) -> Result<(), DistError> {
            Ok(())
        }
        fn barrier(&self) -> Result<(), DistError> {
            Ok(())
        }
        fn reduces_on(&self, _: &Device) -> bool {
            true
        }
        fn all_reduce_sum_device(&self, flat: &Tensor) -> Result<Tensor, DistError> {
            *self.calls.lock().unwrap() += 1;
            assert_eq!(flat.rank(), 1);
            Ok(flat.affine(3.0, 0.0).unwrap())
        }
    }

    #[test]
    fn an_engine_that_reduces_on_the_device_gets_one_fused_tensor_per_bucket() {
        let a = Tensor::new(&[[1f64, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[10f64, 20.0, 30.0], &Device::Cpu).unwrap();
        let replicas = PretendDevice {
            calls: Mutex::new(0),
        };
        let out = all_reduce_mean(&replicas, &[a, b]).unwrap();
        assert_eq!(*replicas.calls.lock().unwrap(), 1);
        assert_eq!(
            out[0].to_vec2::<f64>().unwrap(),
            vec![vec![1.5, 3.0], vec![4.5, 6.0]]
        );
        assert_eq!(out[1].to_vec1::<f64>().unwrap(), vec![15.0, 30.0, 45.0]);
    }

    #[test]
    fn tensors_come_back_as_means_in_their_shapes() {
        let a = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[10f32, 20.0, 30.0], &Device::Cpu).unwrap();
        let replicas = Pretend {
            others: Mutex::new(vec![vec![3.0, 2.0, 1.0, 0.0, -10.0, 0.0, 10.0]]),
            calls: Mutex::new(0),
        };
        let out = all_reduce_mean(&replicas, &[a, b]).unwrap();
        assert_eq!(*replicas.calls.lock().unwrap(), 1, "one fused buffer");
        assert_eq!(
            out[0].to_vec2::<f32>().unwrap(),
            vec![vec![2.0, 2.0], vec![2.0, 2.0]]
        );
        assert_eq!(out[1].to_vec1::<f32>().unwrap(), vec![0.0, 10.0, 20.0]);
        let single = all_reduce_mean(&Single, &out).unwrap();
        assert_eq!(single[1].to_vec1::<f32>().unwrap(), vec![0.0, 10.0, 20.0]);
    }
}
