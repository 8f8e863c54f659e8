/** The nanollm version both sides report. */
export const VERSION = "0.1.0";
