// rebatch: BatchNorm done right for Node.js.
export { ChannelStats } from './stats';
export type { ChannelStatsJSON } from './stats';
export {
  batchNorm, batchNormAsync, batchNormBackward, batchNormBackwardAsync, moments, momentsAsync, updateRunningStats,
} from './functional';
export type {
  BatchNormBackwardOptions, BatchNormGrads, BatchNormOptions, BatchNormResult, MomentsOptions, RunningStatsOptions,
} from './functional';
export type { Layout, TensorLike } from './tensor';
export type { ChannelValues } from './validate';
export { getNumThreads, isa, setIsa, setNumThreads, supportedIsas } from './runtime';
