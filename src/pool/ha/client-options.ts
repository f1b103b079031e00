/**
 * The etcd3 client options HA needs (spread into every pool etcd client). etcd3's defaults are
 * made for throughput, not for a fence clock: a member that failed 3 calls is skipped for 5 s,
 * and gRPC backs off its reconnects up to 2 minutes. Both would turn a 1 s network blip, or etcd
 * coming back after an outage, into many seconds without a renewal (a false fence, or a lease
 * expired for nothing). Here: a member is retried 300 ms after it failed, reconnects are at most
 * 500 ms apart, a call is retried on the next member at once, and watches come back within 1 s.
 */
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { isRecoverableError, type IOptions } from 'etcd3';

export function haClientOptions(): Pick<IOptions, 'faultHandling' | 'grpcOptions'> {
  return {
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 300, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 2 }),
      // etcd3 takes a backoff state (its first step), not the factory
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }).next(),
    },
    grpcOptions: {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
      'grpc.keepalive_time_ms': 10_000, // twice etcd's --grpc-keepalive-min-time (5 s): at 5 s, jitter made etcd send GOAWAY "too many pings"
      'grpc.keepalive_timeout_ms': 3000,
      'grpc.keepalive_permit_without_calls': 1,
    },
  };
}
