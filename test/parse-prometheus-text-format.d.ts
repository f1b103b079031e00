/** The npm package ships no types: the one function the metrics test uses. */
declare module 'parse-prometheus-text-format' {
  export default function parsePrometheusTextFormat(text: string): unknown[];
}
