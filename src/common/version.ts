/** xeno's version, shown by `xeno info` and written into save files. */
export const XENO_VERSION = '0.1.0';
