//! # halfscale-sim
//! CPU training of the seed's SimpleCNN on MNIST.
