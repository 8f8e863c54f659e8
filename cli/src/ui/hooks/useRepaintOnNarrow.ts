import { useEffect, useState } from "react";
import { useStdout } from "ink";

// Erase the screen and its scrollback, cursor home.
const CLEAR_TERMINAL = "\x1b[2J\x1b[3J\x1b[H";

/**
 * A number that changes each time the terminal gets narrower, after the screen was cleared. The
 * terminal re-wraps what is on screen when it narrows, so Ink's own erase (it counts the lines it
 * drew) leaves stale copies of the prompt and status line; the transcript keyed on this number is
 * printed again onto a clean screen instead.
 */
export function useRepaintOnNarrow(): number {
  const { stdout } = useStdout();
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let width = stdout.columns;
    const onResize = () => {
      if (stdout.isTTY && stdout.columns < width) {
        stdout.write(CLEAR_TERMINAL);
        setGeneration((g) => g + 1);
      }
      width = stdout.columns;
    };
    stdout.on("resize", onResize);
    return () => {
      stdout.off("resize", onResize);
    };
  }, [stdout]);
  return generation;
}
